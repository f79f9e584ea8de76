"""``simnet run --live``: the dashboard for a running simulation, fed from the driver's own data.

The driver records every event in a :class:`~simnet._metrics.Recorder`; :class:`LiveRecorder`
is one that also tells a :class:`~edgenode.dashboard.Feed` (a task's verified result or giving
up, FL rounds, ledgers at the end).  :class:`SimPoller` reads the backend once a ``poll_s``:
the nodes (up or crashed), the links, each node's advert fields, chain heights, refusals, the
fault spans that have begun.  The memnet backend is read in full (its nodes are in this
process); other backends show what their submitters know (adverts, connections).  The same
page as a fleet's is served by :class:`~edgenode.dashboard.DashboardServer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from edgenode import __version__
from edgenode.dashboard import DashboardServer, FaultMark, Feed, TaskRow, counter_by_label, counter_total

from ._backend import SwarmBackend
from ._driver import Progress, run_scenario
from ._metrics import Recorder
from ._report import RunResult
from ._scenario import Scenario

__all__ = ["LiveRecorder", "SimPoller", "run_live"]


class LiveRecorder(Recorder):
    """A recorder that also feeds the dashboard (wall clock: ``wall_ms``, for the rows' receipt time)."""

    def __init__(self, feed: Feed, wall_ms: Callable[[], int] | None = None) -> None:
        super().__init__()
        self.feed = feed
        self._wall_ms = wall_ms or (lambda: int(time.time() * 1000))
        self._baseline: float | None = None

    def on_submit(self, task_id: str, kind: str, sla: str, now: float) -> None:
        super().on_submit(task_id, kind, sla, now)
        self.feed.count("submitted")

    def on_result(self, task_id: str, status: str, executor: str, now: float) -> None:
        super().on_result(task_id, status, executor, now)
        rec = self.tasks[task_id]
        if rec.results == 1:
            self.feed.on_task(TaskRow(task_id, rec.kind, executor, status, (now - rec.submitted_s) * 1000.0,
                                      now, self._wall_ms()))

    def on_give_up(self, task_id: str, reason: str, now: float) -> None:
        rec = self.tasks[task_id]
        first = rec.results == 0 and rec.done_s is None
        super().on_give_up(task_id, reason, now)
        if first:
            self.feed.on_task(TaskRow(task_id, rec.kind, "", reason, None, now, self._wall_ms()))

    def on_fl_round(self, rnd: int, accuracy: float, loss: float, updates: int, now: float, **extra: Any) -> None:
        super().on_fl_round(rnd, accuracy, loss, updates, now, **extra)
        self.feed.on_fl_round(rnd, accuracy, loss, updates, now)

    def on_ledger(self, node: str, height: int, verified: bool, detail: str = "") -> None:
        super().on_ledger(node, height, verified, detail)
        held = self.feed.nodes.get(node, {}).get("ledger") or {}
        self.feed.set_ledger(node, height, verified, detail, held.get("held"))

    def on_fork_proof(self, n: int = 1) -> None:
        super().on_fork_proof(n)
        self.feed.set_fork_proofs(self.fork_proofs)

    @property  # type: ignore[override]
    def fl_centralized(self) -> float | None:
        return self._baseline

    @fl_centralized.setter
    def fl_centralized(self, value: float | None) -> None:
        self._baseline = value
        if value is not None:
            self.feed.set_fl_run(baseline=value)


class SimPoller:
    """Reads a backend's swarm into the feed (call :meth:`poll` every second or so)."""

    def __init__(self, feed: Feed, backend: SwarmBackend, scenario: Scenario) -> None:
        self.feed = feed
        self.backend = backend
        self.scenario = scenario
        self.now_s = 0.0
        self.cpu_s = 0.0
        """Thread CPU time spent polling (the benchmark reads it)."""

    def poll(self) -> None:
        c0 = time.thread_time()
        try:
            self._poll()
        finally:
            self.cpu_s += time.thread_time() - c0

    def _poll(self) -> None:
        from ._swarm import MemSwarm  # the memnet backend: its nodes live in this process

        feed, be = self.feed, self.backend
        for pid in be.node_ids:
            feed.see_node(pid)
        if isinstance(be, MemSwarm) and be.nodes:
            self._poll_mem(be)
        else:
            self._poll_submitters(be)
        spans = getattr(be, "schedule", None)
        marks = []
        ids = be.node_ids
        for s in getattr(spans, "spans", ()):
            if s.start_s <= self.now_s:
                nodes = tuple(ids[i] for i in s.nodes if i < len(ids))
                marks.append(FaultMark(s.kind, s.label, s.start_s, s.end_s if s.end_s <= self.now_s else None, nodes))
        feed.set_faults(marks)

    def _poll_mem(self, be: Any) -> None:
        feed = self.feed
        links: set[tuple[str, str]] = set()
        refused: Counter[str] = Counter()
        forks = 0
        ids = set(be.ids)
        for pid, node in zip(be.ids, be.nodes, strict=False):
            up = be.net.is_up(pid)
            feed.set_state(pid, "up" if up else "down")
            if up:
                for peer in node.transport.peers():
                    if peer in ids:
                        links.add((pid, peer))
            a = node.admission
            feed.set_advert(pid, addrs=node.transport.listen_addrs, capabilities=node.executor.capabilities(),
                            slots=a.slots, free_slots=a.free_slots, queue_len=a.queue_len, queue_cap=a.queue_cap,
                            cost_class=node.config.node.cost_class, version=__version__)
            led = feed.nodes[pid].get("ledger") or {}
            feed.set_ledger(pid, node.chain.height, led.get("verified"), led.get("detail", ""),
                            led.get("held"))
            refused.update(counter_by_label(node.metrics.refused, "reason"))
            refused.update(counter_by_label(node.metrics.security, "reason"))
            refused.update(node.ledger_refusals)
            forks += counter_total(node.metrics.forks)
        feed.set_links(links)
        feed.set_refusals(refused)
        if forks:
            feed.set_fork_proofs(max(forks, feed.ledger["fork_proofs"]))

    def _poll_submitters(self, be: Any) -> None:
        feed = self.feed
        now = int(time.time() * 1000)
        links: set[tuple[str, str]] = set()
        for sub in getattr(be, "submitters", ()):
            me = sub.transport.peer_id
            for adv in sub.adverts.live(now):
                feed.set_advert(adv.peer_id, addrs=adv.addrs, capabilities=adv.capabilities, slots=adv.slots,
                                free_slots=adv.free_slots, queue_len=adv.queue_len, queue_cap=adv.queue_cap,
                                cost_class=adv.cost_class, version=adv.version, issued_ms=adv.issued_ms)
            for peer in sub.transport.peers():
                if peer in feed.nodes:
                    links.add((me, peer))
        feed.set_links(links)


async def run_live(
    scenario: Scenario,
    backend: SwarmBackend,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    poll_s: float = 1.0,
    on_progress: Callable[[Progress], None] | None = None,
    on_serving: Callable[[DashboardServer], None] | None = None,
    hold: asyncio.Event | None = None,
) -> RunResult:
    """Run the scenario with the dashboard served on ``host:port`` while it runs.

    ``on_serving`` is told the server once it listens (its :attr:`~DashboardServer.url`);
    with ``hold``, the page stays up after the run until the event is set.
    """
    sw = scenario.swarm
    feed = Feed(f"simnet {sw.name}: {sw.nodes} nodes ({sw.transport})", t0_ms=int(time.time() * 1000))
    feed.set_fl_run(rounds=scenario.fl.rounds if scenario.fl.enabled else 0)
    rec = LiveRecorder(feed)
    poller = SimPoller(feed, backend, scenario)
    server = DashboardServer(feed, host=host, port=port)
    await server.start()
    if on_serving is not None:
        on_serving(server)

    def progress(p: Progress) -> None:
        poller.now_s = p.t_s
        feed.tick(p.t_s, p.phase)
        feed.set_count("in_flight", p.in_flight)
        if on_progress is not None:
            on_progress(p)

    async def keep_polling() -> None:
        while True:
            await asyncio.sleep(poll_s)
            poller.poll()

    async def baseline() -> None:
        from ._federated import centralized_accuracy

        rec.fl_centralized = await asyncio.to_thread(centralized_accuracy, scenario.fl, sw.seed)

    polling = asyncio.create_task(keep_polling(), name="simnet dashboard poller")
    extra = [asyncio.create_task(baseline())] if scenario.fl.enabled else []
    try:
        try:
            res = await run_scenario(scenario, backend, on_progress=progress, recorder=rec)
        finally:
            for t in (polling, *extra):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):  # a failed baseline shows none
                    await t
        feed.tick(res.elapsed_s, "done")
        if hold is not None:
            await hold.wait()
        return res
    finally:
        await server.stop()


def run_with_dashboard(scenario: Scenario, *, host: str = "127.0.0.1", port: int = 8080,
                       hold: bool = False) -> RunResult:
    """``simnet run --live``: build the backend, serve the page while the run goes on, print its URL.

    With ``hold`` the page stays up after the run until SIGINT or SIGTERM."""
    import signal
    import sys

    from edgenode.dashboard import check_bind

    from ._swarm import make_backend

    check_bind(host, swarm_mode=False, token=None)

    async def go() -> RunResult:
        stop = asyncio.Event()
        if hold:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)

        def serving(server: DashboardServer) -> None:
            print(f"dashboard {server.url}", flush=True)
            sys.stderr.flush()

        res = await run_live(scenario, make_backend(scenario), host=host, port=port, on_serving=serving,
                             hold=stop if hold else None)
        return res

    return asyncio.run(go())
