"""The driver: runs a scenario's workload, faults and FL rounds against a swarm.

It is the asyncio edge of the simulator.  The schedules it follows (arrivals,
faults) are sans-IO and seeded; the driver holds the clock (injected, the
event loop's monotonic time by default) and sleeps only until the next thing
on those schedules is due.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from ._backend import FLRound, SwarmBackend, TaskOutcome, TaskRequest
from ._faults import FaultAction, FaultSchedule
from ._metrics import Recorder
from ._report import RunResult
from ._scenario import Scenario
from ._workload import Arrival, arrivals

__all__ = ["Progress", "run_scenario", "PROBE_EVERY_S"]

PROBE_EVERY_S = 0.5
"""Seconds between gossip delivery probes."""


@dataclass
class Progress:
    """A snapshot for live display."""

    t_s: float = 0.0
    duration_s: float = 0.0
    submitted: int = 0
    completed: int = 0
    ok: int = 0
    in_flight: int = 0
    gave_up: int = 0
    fl_round: int = 0
    fl_accuracy: float | None = None
    fl_enabled: bool = False
    phase: str = "starting"
    faults: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    """Per node group (worker process or Ray actor): where it runs, nodes up, tasks run, memory."""


def _record_outcome(rec: Recorder, req: TaskRequest, out: TaskOutcome, now: float) -> None:
    for _ in range(out.attempts):
        rec.on_attempt(req.task_id, now)
    if out.accepted:
        rec.on_accept(req.task_id, now)
    if out.rejected_receipts:
        rec.byzantine["forged_receipts_rejected"] += out.rejected_receipts
    if out.verified:
        rec.on_result(req.task_id, out.status, out.executor, now)
    else:
        rec.on_give_up(req.task_id, out.status or "failed", now)


async def run_scenario(
    scenario: Scenario,
    backend: SwarmBackend,
    *,
    clock: Callable[[], float] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    recorder: Recorder | None = None,
) -> RunResult:
    """Run ``scenario`` on ``backend`` (started and stopped here); return figures and record.

    ``recorder``: where the run's events go (default a new :class:`Recorder`; the live dashboard
    passes one that also feeds its page)."""
    loop = asyncio.get_running_loop()
    now_fn = clock or loop.time
    sw = scenario.swarm
    rec = recorder if recorder is not None else Recorder()
    prog = Progress(duration_s=sw.duration_s, fl_enabled=scenario.fl.enabled)
    schedule = FaultSchedule(scenario.faults, sw.nodes, sw.seed, sw.duration_s)
    todo = arrivals(scenario.workload, sw.duration_s, sw.seed)

    def tell() -> None:
        if on_progress is not None:
            prog.groups = backend.progress_rows()
            on_progress(prog)

    tell()
    try:
        await backend.start()
    except BaseException:
        await backend.stop()  # workers and nodes that did start
        raise
    t0 = now_fn()

    def now() -> float:
        return now_fn() - t0

    inflight: set[asyncio.Task[None]] = set()

    async def one(a: Arrival) -> None:
        req = TaskRequest(
            task_id=a.task_id,
            mix=a.mix,
            payload=a.payload,
            submitter=a.submitter,
            redundancy=scenario.workload.redundancy,
            max_attempts=scenario.workload.max_attempts,
        )
        out = await backend.submit(req)
        _record_outcome(rec, req, out, now())
        prog.completed += 1 if out.verified else 0
        prog.ok += 1 if out.verified and out.status == "ok" else 0
        prog.gave_up += 0 if out.verified else 1

    def on_round(r: FLRound) -> None:
        rec.on_fl_round(r.round, r.accuracy, r.loss, r.updates, now(), dropped=r.dropped)
        prog.fl_round = r.round
        prog.fl_accuracy = r.accuracy
        tell()

    def on_deliver(msg_id: str, node: str) -> None:
        rec.on_gossip_deliver(msg_id, node, now())

    async def fl_job() -> None:
        if scenario.fl.enabled:
            rec.fl_centralized = await backend.run_fl(scenario.fl, on_round)

    async def apply(act: FaultAction) -> None:
        await backend.apply(act)
        text = f"{act.action} {','.join(map(str, act.nodes))}" + (f" ({act.behaviour})" if act.behaviour else "")
        rec.on_event(text, now())
        prog.faults.append(f"{act.at_s:.1f}s {text}")

    fl_task = asyncio.create_task(fl_job())
    prog.phase = "workload"
    i = 0
    probes = 0
    next_probe = 0.5
    try:
        while True:
            t = now()
            # every arrival is submitted, even when the loop wakes late past the end
            while i < len(todo) and todo[i].at_s <= t:
                rec.on_submit(todo[i].task_id, todo[i].mix.task, todo[i].mix.sla, t)
                task = asyncio.create_task(one(todo[i]))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
                prog.submitted += 1
                i += 1
            if t >= sw.duration_s:
                break
            for act in schedule.due(t):
                await apply(act)
            if t >= next_probe:
                msg_id = f"probe-{probes}"
                rec.on_gossip_publish(msg_id, 0, t)  # deliveries may come before the count
                receivers = await backend.gossip_probe(msg_id, on_deliver)
                rec.on_gossip_publish(msg_id, receivers, t)
                probes += 1
                next_probe = t + PROBE_EVERY_S
            prog.t_s = t
            prog.in_flight = len(inflight)
            tell()
            nxt = min(
                x
                for x in (
                    todo[i].at_s if i < len(todo) else sw.duration_s,
                    schedule.next_at() or sw.duration_s,
                    next_probe,
                    t + 0.25,
                    sw.duration_s,
                )
            )
            await asyncio.sleep(max(0.0, nxt - now()))
        prog.phase = "draining"
        tell()
        # the end of the run: faults that were still on end now, so that work can drain;
        # faults planned after the end never start
        for act in schedule.wind_down(now()):
            await apply(act)
        if inflight:
            await asyncio.wait(set(inflight), timeout=sw.drain_s)
        if scenario.fl.enabled:
            prog.phase = "federated rounds"
            tell()
            await asyncio.wait({fl_task}, timeout=max(sw.drain_s, scenario.fl.rounds * scenario.fl.round_timeout_s * 2))
        prog.phase = "collecting ledgers"
        tell()
        state = await backend.collect()
    finally:
        for task in (*inflight, fl_task):
            task.cancel()
        unfinished = [tid for tid, r in rec.tasks.items() if r.results == 0 and r.done_s is None]
        for task in (*inflight, fl_task):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        elapsed = now()
        await backend.stop()
    for tid in unfinished:
        rec.on_give_up(tid, "unfinished", elapsed)
    if unfinished:
        backend.notes.append(f"{len(unfinished)} tasks still in flight when the drain time ran out (status unfinished)")
    if fl_task.done() and not fl_task.cancelled() and fl_task.exception() is not None:
        backend.notes.append(f"FL rounds failed: {fl_task.exception()!r}")
    for led in state.ledgers:
        rec.on_ledger(led.node, led.height, led.verified, led.detail)
    # results on the honest nodes' ledgers: a task executed and recorded but never delivered
    # counts as accepted (so, lost); one recorded more often than its redundancy was re-executed
    recorded: dict[str, int] = {}
    for led in state.ledgers:
        if not led.byzantine:
            for tid in led.task_ids:
                recorded[tid] = recorded.get(tid, 0) + 1
    for tid, n in recorded.items():
        if tid in rec.tasks:
            rec.on_accept(tid, rec.tasks[tid].submitted_s)
            if n > scenario.workload.redundancy:
                rec.rerecorded.append(tid)
    rec.on_fork_proof(state.fork_proofs)
    rec.on_drops(state.drops.items())
    mv = state.moved
    rec.on_moved_work(mv.killed, mv.resumed, mv.checked, mv.mismatched)
    for k, v in state.byzantine.items():
        rec.byzantine[k] += v
    params = {"nodes": sw.nodes, "transport": sw.transport, "scenario": sw.name, "seed": sw.seed}
    prog.phase = "done"
    prog.in_flight = 0
    prog.t_s = elapsed
    tell()
    return RunResult(
        scenario=sw.name,
        params=params,
        figures=tuple(rec.figures(elapsed, **params)),
        recorder=rec,
        spans=schedule.spans,
        elapsed_s=elapsed,
        notes=tuple(backend.notes),
        placement=tuple(dict(row) for row in backend.placement),
    )
