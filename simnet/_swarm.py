"""The memnet backend: real :class:`edgenode.node.Node` objects on the in-process network.

Every executor is the node code that runs on a board: the real executor,
admission, ledger chain (SQLite or memory store), signed adverts and receipts,
the real wasmtime sandbox and onnxruntime (shared, see :mod:`simnet._engines`).
Submitters are the real :class:`edgenode.tasks.Submitter`.  Only the network
is simulated (:class:`edgenode.net.memnet.MemNetwork`: links, loss,
partitions, crashes).  A kill also stops the node's runs of tasks with safe
points, as killing its process would (:mod:`simnet._migrate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgenode.config import NodeConfig, NodeSection
from edgenode.errors import EdgenodeError
from edgenode.fl import FLController
from edgenode.net import DROP_COUNTERS, GossipMessage, NetError, Transport
from edgenode.net.memnet import LinkSpec, MemNetwork
from edgenode.node import Node, NodeTiming
from edgenode.protocol import (
    ADVERT_TOPIC,
    HEAD_TOPIC,
    WORK_TOPIC,
)
from edgenode.runtime import Runtime, build_runtime
from edgenode.tasks import Submitter
from ledger import LedgerStore, MemoryLedgerStore, SqliteLedgerStore

from ._audit import audit_own_chain
from ._backend import FLRound, LedgerState, MovedWork, SwarmBackend, SwarmState
from ._byzantine import ByzantineTransport, replay_specs, spam_burst
from ._engines import NodeInfer, NodeWasm, SharedEngines, task_shape
from ._errors import SimnetError
from ._faults import FaultAction
from ._federated import centralized_accuracy, fl_start, launch_fl, node_fl_section
from ._migrate import migrate_module, same_as_uninterrupted
from ._scenario import FLSection, LinkClass, Scenario
from ._swarm_base import PROBE_TOPIC, _identity, _SwarmBase, assign_profiles
from ._wrap import QuietTransport, RecordingTransport

__all__ = ["MemSwarm", "make_backend", "BACKENDS", "PROBE_TOPIC", "assign_profiles", "pair_link"]


def pair_link(a: LinkClass, b: LinkClass) -> LinkSpec:
    """The link between a node behind ``a`` and one behind ``b``: mean latency and jitter,
    losses compounded, the narrower bandwidth."""
    bws = [x for x in (a.bandwidth_bps, b.bandwidth_bps) if x > 0]
    return LinkSpec(
        latency_ms=(a.latency_ms + b.latency_ms) / 2,
        jitter_ms=(a.jitter_ms + b.jitter_ms) / 2,
        loss=1 - (1 - a.loss) * (1 - b.loss),
        bandwidth_bps=min(bws) if bws else None,
    )


class MemSwarm(_SwarmBase):
    """A scenario's swarm on memnet."""

    def __init__(self, scenario: Scenario, workdir: Path | None = None) -> None:
        super().__init__(scenario, workdir)
        sw = scenario.swarm
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.rng = random.Random(sw.seed ^ 0x51AB)
        self.net = MemNetwork(sw.seed, gossip_degree=6)
        self.runtimes: list[Runtime] = []
        self.nodes: list[Node] = []
        self.wasm: list[NodeWasm] = []
        """Each node's view of the shared sandbox (its kill switch: what a kill does to its runs)."""
        self.byz: dict[int, ByzantineTransport] = {}
        self._launcher: Transport | None = None
        self._bg: list[asyncio.Task[None]] = []
        self._engines: SharedEngines | None = None
        self._degraded: dict[int, LinkSpec] = {}
        self._started = False

    # -- set-up -------------------------------------------------------------------------
    def _link_of(self, i: int) -> LinkClass:
        return self.sc.links[self.sc.profiles[self.profiles[i]].link]

    def _submitter_class(self) -> str:
        return "lan" if "lan" in self.sc.links else sorted(self.sc.links)[0]

    async def _store(self, i: int, root: Path) -> LedgerStore:
        if self.sc.swarm.ledger == "memory":
            return MemoryLedgerStore()
        return await SqliteLedgerStore.open(root / f"node{i:05d}.db", synchronous="NORMAL")

    async def start(self) -> None:
        sw = self.sc.swarm
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=32, thread_name_prefix="simnet"))
        if self._workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="simnet-")
            root = Path(self._tmp.name)
        else:
            root = Path(self._workdir)
            root.mkdir(parents=True, exist_ok=True)
        need_models = any(m.task == "infer" for m in self.sc.workload.mix) or any(
            p.models for p in self.sc.profiles.values()
        )
        if need_models:
            await asyncio.to_thread(task_shape, "infer", 0)  # trains the digits model off the loop
        modules = [task_shape(task, 0).module for task in ("echo", "spin")]
        self._engines = eng = SharedEngines(root, models=need_models)
        if any(m.task == "migrate" for m in self.sc.workload.mix):
            modules.append(await asyncio.to_thread(migrate_module))  # clang, once per process
            await asyncio.to_thread(eng.sandbox.compile, modules[-1])  # Asyncify: before, not in, the workload
        for a in sorted(self.sc.links):
            for b in sorted(self.sc.links):
                if a <= b:
                    self.net.set_class_link(a, b, pair_link(self.sc.links[a], self.sc.links[b]))
        byz_idx = self.schedule.byzantine_nodes()
        quiet = frozenset(
            ([] if sw.follow_adverts else [ADVERT_TOPIC, WORK_TOPIC]) + ([] if sw.replicate else [HEAD_TOPIC])
        )
        timing = NodeTiming(advert_s=sw.advert_s, head_s=1.0, drain_s=5.0)
        for i in range(sw.nodes):
            prof = self.sc.profiles[self.profiles[i]]
            ident = _identity(sw.seed, "node", i)
            t: Transport = self.net.add_node(ident, node_class=prof.link)
            if quiet:
                t = QuietTransport(t, quiet)
            if i in byz_idx:
                bz = ByzantineTransport(t, ident)
                self.byz[i] = bz
                t = bz
            models = [eng.digits_hash] if "digits" in prof.models and eng.digits_hash else []
            cfg = NodeConfig(
                node=NodeSection(slots=prof.slots, queue=prof.queue, cost_class=prof.cost_class),
                fl=node_fl_section(self.sc.fl, i, sw.seed),
            )
            self.wasm.append(NodeWasm(eng, prof.speed))
            runtime = build_runtime(
                ident, cfg, t, await self._store(i, root),
                sandbox=self.wasm[i], registry=NodeInfer(eng, models, list(prof.providers), prof.speed),
                timing=timing, replicate=sw.replicate, fl=self.sc.fl.enabled,
            )  # fmt: skip
            self.runtimes.append(runtime)
            self.nodes.append(runtime.node)
            self.ids.append(ident.peer_id)
        await asyncio.gather(*(r.start() for r in self.runtimes))
        self.net.connect_random(4, self.ids)
        for i, node in enumerate(self.nodes):
            self._bg.append(asyncio.create_task(self._probe_reader(node.transport.subscribe(PROBE_TOPIC), i)))
        for j in range(self.sc.workload.submitters):
            ident = _identity(sw.seed, "submitter", j)
            rt = RecordingTransport(self.net.add_node(ident, node_class=self._submitter_class()))
            await rt.start()
            targets = self.ids if not sw.follow_adverts else self.rng.sample(self.ids, min(8, len(self.ids)))
            for pid in targets:
                self.net.wire(ident.peer_id, pid)
            sub = Submitter(ident, rt)
            await sub.start()
            for module in modules:
                sub.add_module(module)
            self.submitters.append(sub)
            self.recorders.append(rt)
        for sub in self.submitters:
            await sub.refresh(timeout=5.0)
        self._started = True
        if any(p.providers != ("cpu",) for p in self.sc.profiles.values()):
            self.notes.append("execution providers other than cpu are advertised as configured; models run on CPU")

    async def stop(self) -> None:
        for t in self._bg:
            t.cancel()
        for t in self._bg:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._bg.clear()
        for sub in self.submitters:
            await sub.close()
        if self._launcher is not None:
            with contextlib.suppress(EdgenodeError):
                await self._launcher.stop()
            self._launcher = None
        for i, pid in enumerate(self.ids):
            if not self.net.is_up(pid):
                with contextlib.suppress(EdgenodeError):
                    self.net.restart(pid)  # a crashed node restarts to shut down cleanly
                    self.wasm[i].switch.revive()
        await asyncio.gather(*(self._stop_node(r) for r in self.runtimes))
        for rt in self.recorders:
            with contextlib.suppress(EdgenodeError):
                await rt.stop()
        if self._engines is not None:
            self._engines.close()
            self._engines = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @staticmethod
    async def _stop_node(runtime: Runtime) -> None:
        with contextlib.suppress(EdgenodeError):
            await runtime.stop()

    # -- workload -------------------------------------------------------------------------
    def _is_forger(self, peer: str) -> bool:
        return any(self.ids[i] == peer and "forge_receipts" in bz.behaviours for i, bz in self.byz.items())

    # -- faults -------------------------------------------------------------------------
    def _all_peers(self) -> list[str]:
        return self.ids + [s.transport.peer_id for s in self.submitters]

    async def apply(self, action: FaultAction) -> None:
        pids = [self.ids[i] for i in action.nodes]
        kind = action.action
        if kind in ("kill", "partition", "degrade"):
            self.faulted.update(action.nodes)
        if kind == "kill":
            for i, pid in zip(action.nodes, pids, strict=True):
                if self.net.is_up(pid):
                    self.wasm[i].switch.kill()  # its runs of tasks with safe points die with it
                    self.net.crash(pid)
        elif kind == "restart":
            for i, pid in zip(action.nodes, pids, strict=True):
                with contextlib.suppress(EdgenodeError):
                    self.net.restart(pid)
                    self.wasm[i].switch.revive()
        elif kind == "partition":
            self.net.partition([pids])
        elif kind == "heal":
            self.net.heal()
        elif kind in ("degrade", "restore"):
            for i in action.nodes:
                base = self._link_of(i)
                spec = (
                    LinkSpec(action.latency_ms, base.jitter_ms, action.loss, base.bandwidth_bps or None)
                    if kind == "degrade"
                    else None
                )
                for other in self._all_peers():
                    if other == self.ids[i]:
                        continue
                    if spec is None:
                        j = self.ids.index(other) if other in self.ids else -1
                        oc = self._link_of(j) if j >= 0 else self.sc.links[self._submitter_class()]
                        self.net.set_link(self.ids[i], other, pair_link(base, oc))
                    else:
                        self.net.set_link(self.ids[i], other, spec)
        elif kind == "byzantine":
            for i in action.nodes:
                self.byz[i].behaviours.add(action.behaviour)
                if action.behaviour == "spam":
                    self._bg.append(asyncio.create_task(self._spam(self.byz[i])))
                elif action.behaviour == "replay":
                    self._bg.append(asyncio.create_task(self._replay(self.byz[i])))
        else:
            raise SimnetError(f"unknown fault action {kind!r}")

    async def _spam(self, bz: ByzantineTransport) -> None:
        victims = [p for p in self.ids if p != bz.peer_id][:8]
        while True:
            await spam_burst(bz, victims, n=10)
            await asyncio.sleep(0.2)

    async def _replay(self, bz: ByzantineTransport) -> None:
        rng = random.Random(self.sc.swarm.seed ^ 0xBAD)
        while True:
            await replay_specs(bz, self.ids, rng)
            await asyncio.sleep(0.3)

    # -- gossip probes ------------------------------------------------------------------
    async def _probe_reader(self, sub: AsyncIterator[GossipMessage], i: int) -> None:
        pid = self.ids[i]
        async for msg in sub:
            if self._on_probe is not None:
                self._on_probe(msg.data.decode("ascii", "replace"), pid)

    async def gossip_probe(self, msg_id: str, on_deliver: Callable[[str, str], None]) -> int:
        self._on_probe = on_deliver
        live = [i for i, pid in enumerate(self.ids) if self.net.is_up(pid)]
        if not live:
            return 0
        src = self.rng.choice(live)
        try:
            await self.nodes[src].transport.publish(PROBE_TOPIC, msg_id.encode("ascii"))
        except NetError:
            return 0
        return len(live) - 1

    # -- FL -------------------------------------------------------------------------------
    @property
    def fl(self) -> list[FLController]:
        """The nodes' FL controllers (every node hosts one when the scenario runs FL)."""
        return [r.fl for r in self.runtimes if r.fl is not None]

    async def run_fl(self, fl: FLSection, on_round: Callable[[FLRound], None]) -> float | None:
        """Launch one run on the nodes' controllers from a launcher peer, as `edgenode fl start` does."""
        central = await asyncio.to_thread(centralized_accuracy, fl, self.sc.swarm.seed)
        ident = _identity(self.sc.swarm.seed, "fl-launcher", 0)
        self._launcher = launcher = self.net.add_node(ident, node_class=self._submitter_class())
        await launcher.start()
        peers = self.ids[: fl.participants]
        for pid in peers:
            self.net.wire(ident.peer_id, pid)
        poisoned = len(self.schedule.byzantine_nodes("poison") & set(range(fl.participants)))
        start = fl_start(fl, self.sc.swarm.seed, self.nodes[0].clock.now_ms(), malicious=poisoned)
        await launch_fl(start, launcher, ident, peers, self.fl, on_round)
        return central

    # -- the end ----------------------------------------------------------------------------
    async def collect(self) -> SwarmState:
        sim_of: dict[str, str] = {}
        for rt in self.recorders:
            sim_of.update(rt.sim_of)
        ledgers = []
        forks = 0
        for i, node in enumerate(self.nodes):
            await node.chain.flush()
            store = node.store
            audit = await audit_own_chain(store, node.identity.public_key)
            tids = tuple(sim_of.get(t, t) for t in audit.task_ids)
            forks += len(await store.forks())
            ledgers.append(LedgerState(self.ids[i], audit.height, audit.verified, audit.detail, tids, i in self.byz))
        drops: Counter[str] = Counter()
        for k, v in self.net.counters().items():
            if k in DROP_COUNTERS:
                drops[k] += v
        byz: Counter[str] = Counter()
        for bz in self.byz.values():
            byz.update(bz.counts)
        for node in self.nodes:
            for k, v in node.executor.counts.items():
                if k in ("rejected", "repeat", "invalid", "busy"):
                    byz[f"executor_{k}"] += v
        return SwarmState(tuple(ledgers), forks, dict(drops), dict(byz), await self._moved_work(sim_of))

    async def _moved_work(self, sim_of: dict[str, str]) -> MovedWork:
        """Kills of runs with safe points and the resumes, by simulator task id; the outputs of the
        tasks that resumed compared with uninterrupted runs (one whole run each, after the workload)."""
        killed = tuple((sim_of.get(t, t), fuel) for w in self.wasm for t, fuel in w.switch.killed)
        resumed = tuple((sim_of.get(t, t), fuel) for w in self.wasm for t, fuel in w.switch.resumed)
        moved = sorted({t for t, _ in resumed} & set(self.migrate_results))
        assert self._engines is not None
        sandbox = self._engines.sandbox
        mismatched = []
        for tid in moved:
            if not await asyncio.to_thread(same_as_uninterrupted, sandbox, *self.migrate_results[tid]):
                mismatched.append(tid)
        return MovedWork(killed, resumed, tuple(moved), tuple(mismatched))


BACKENDS = ("process", "ray")
"""Where a libp2p swarm's node groups run: worker processes on this machine, or Ray actors."""


def make_backend(
    scenario: Scenario, workdir: Path | None = None, *, backend: str = "process", ray_address: str | None = None
) -> SwarmBackend:
    """The backend for the scenario's transport.

    ``backend`` places a libp2p swarm's node groups: ``process`` (worker processes on this
    machine, the default) or ``ray`` (Ray actors across the cluster at ``ray_address``, or a
    local Ray instance when None; needs ``pip install 'edgenode[ray]'``).  ``ray`` runs real
    libp2p hosts whatever the scenario's transport says.
    """
    if backend not in BACKENDS:
        raise SimnetError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if backend == "ray":
        from ._p2p import P2PSwarm
        from ._ray import RayLauncher  # the one module that imports ray; a clear error when it is missing

        return P2PSwarm(scenario, workdir, launcher=RayLauncher(ray_address))
    if scenario.swarm.transport == "libp2p":
        from ._p2p import P2PSwarm

        return P2PSwarm(scenario, workdir)
    return MemSwarm(scenario, workdir)
