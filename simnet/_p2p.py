"""The libp2p backend: real py-libp2p hosts, in node groups hosted by worker processes or Ray actors.

The executors run in node groups (:class:`simnet._p2p_group.NodeGroup`), one per core:
worker processes on this machine by default (:class:`~simnet._p2p_handles.ProcessLauncher`),
or Ray actors placed across a Ray cluster (:class:`simnet._ray.RayLauncher`, ``--backend ray``).
Each node has its own libp2p host (TCP + Noise + yamux, GossipSub), SQLite ledger and the
real sandbox.  The submitters are libp2p hosts in this process, running the real
:class:`edgenode.tasks.Submitter`.  One code path drives both: commands to group handles.

What works: the workload, kill and restart (a killed node stops; it comes back on a fresh
host with the same key and ledger), partitions (every node, and every submitter, gates its
own connections: :mod:`simnet._p2p_gate`), degraded links (delay added at the degraded
node's edge), byzantine forge_receipts, spam and replay.  Not on libp2p: FL rounds,
byzantine poisoning and ``migrate`` tasks; the report notes each one skipped.

Wiring for a few dozen hosts on a few cores (every gossip message costs each host
15-30 ms of CPU): staggered starts and bounded dials in the groups, a sparse random
graph (``DIAL_DEGREE``), executors dialling the submitters (not the reverse) and not
subscribing to the topics they only publish on, stretched GossipSub heartbeats
(``SIM_P2P``) and one delivery probe in ``PROBE_STRIDE``.  See docs/simnet.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgenode.errors import EdgenodeError
from edgenode.net.p2p import P2PTransport
from edgenode.tasks import Submitter

from ._backend import FLRound, LedgerState, SwarmState, TaskOutcome, TaskRequest
from ._engines import task_shape
from ._errors import SimnetError
from ._faults import FaultAction
from ._p2p_gate import GatedTransport
from ._p2p_group import SIM_P2P, quiet_gossipsub_warnings
from ._p2p_handles import NODES_PER_GROUP_MAX, GroupHandle, GroupLauncher, ProcessLauncher
from ._scenario import FLSection, Scenario
from ._swarm_base import PROBE_TOPIC, _identity, _SwarmBase
from ._wrap import RecordingTransport

__all__ = ["P2PSwarm", "NODES_PER_WORKER_MAX"]

NODES_PER_WORKER_MAX = NODES_PER_GROUP_MAX
"""More nodes than this per worker process and a group's trio threads starve each other."""
DIAL_DEGREE = 3
"""Random executors each executor dials at start (a sparse random graph; GossipSub meshes
over it).  Everyone dialling one bootstrap host instead makes a star and GRAFT floods."""
PROBE_STRIDE = 4
"""The driver asks for a gossip probe every 0.5 s; on libp2p only every 4th is published (every
message costs each of the 50 hosts 15-30 ms of CPU: probes at 2/s alone would load a core)."""
PROGRESS_EVERY_S = 1.0
"""How often the driver asks each group for its progress (nodes up, tasks run, RSS)."""


class P2PSwarm(_SwarmBase):
    """A scenario's swarm on real libp2p, across node groups (worker processes or Ray actors)."""

    def __init__(self, scenario: Scenario, workdir: Path | None = None, launcher: GroupLauncher | None = None) -> None:
        super().__init__(scenario, workdir)
        self.launcher: GroupLauncher = launcher or ProcessLauncher()
        self.groups: list[GroupHandle] = []
        self.group_of: dict[int, int] = {}
        self.gates: list[GatedTransport] = []
        self._forgers: set[str] = set()
        self._p2p_tmp: tempfile.TemporaryDirectory[str] | None = None
        self._skipped: set[str] = set()
        self._probe_calls = 0
        self._poller: asyncio.Task[None] | None = None
        self._stopped = False

    def _deliver(self, msg_id: str, peer: str) -> None:
        if self._on_probe is not None:
            self._on_probe(msg_id, peer)

    def _group_cfg(self, g: int, groups: int, root: Path | None, need_models: bool) -> dict[str, Any]:
        sw = self.sc.swarm
        idx = list(range(g, sw.nodes, groups))
        byz = self.schedule.byzantine_nodes()
        prof = {i: self.sc.profiles[self.profiles[i]] for i in idx}
        return {
            "group": g,
            "workdir": None if root is None else str(root / f"group{g}"),
            "listen_ip": self.groups[g].listen_ip,
            "seed": sw.seed + g,
            "models": need_models,
            "advert_s": sw.advert_s,
            "replicate": sw.replicate,
            "follow_adverts": sw.follow_adverts,
            "byzantine": [i for i in byz if i in idx],
            "seeds": {str(i): _identity(sw.seed, "node", i).seed.hex() for i in idx},
            "profiles": {
                str(i): {
                    "slots": p.slots, "queue": p.queue, "cost_class": p.cost_class, "speed": p.speed,
                    "providers": list(p.providers), "models": bool(p.models),
                }
                for i, p in prof.items()
            },
        }  # fmt: skip

    async def start(self) -> None:
        sw = self.sc.swarm
        quiet_gossipsub_warnings()
        root: Path | None
        if self._workdir is not None:
            root = Path(self._workdir)
        elif self.launcher.kind == "process":
            self._p2p_tmp = tempfile.TemporaryDirectory(prefix="simnet-p2p-")
            root = Path(self._p2p_tmp.name)
        else:
            root = None  # each Ray actor keeps its ledgers in a directory of its own machine
        groups = self.launcher.groups_for(sw.nodes)
        need_models = any(m.task == "infer" for m in self.sc.workload.mix) or any(
            p.models for p in self.sc.profiles.values()
        )
        for i in range(sw.nodes):
            self.ids.append(_identity(sw.seed, "node", i).peer_id)
            self.group_of[i] = i % groups
        self.groups = await self.launcher.launch(groups, self._deliver)
        for h in self.groups:
            h.placement["nodes"] = [i for i in range(sw.nodes) if self.group_of[i] == h.group]
        self.placement = [h.placement for h in self.groups]
        answers = await asyncio.gather(
            *(h.call({"op": "start", "cfg": self._group_cfg(h.group, groups, root, need_models)}, 300.0)
              for h in self.groups)
        )  # fmt: skip
        addrs = [a[0] for ready in answers for a in ready.values() if a]
        # submitters first: with follow_adverts off, every executor dials them (so adverts reach
        # them directly, and no submitter has to dial the whole swarm at once)
        sub_addrs: list[str] = []
        for j in range(self.sc.workload.submitters):
            ident = _identity(sw.seed, "submitter", j)
            raw = P2PTransport(ident, listen=[f"/ip4/{self.launcher.driver_ip}/tcp/0"], config=SIM_P2P)
            gate = GatedTransport(raw, seed=-1 - j)
            rt = RecordingTransport(gate)
            await rt.start()
            sub = Submitter(ident, rt)
            await sub.start()
            for task in ("echo", "spin"):
                sub.add_module(task_shape(task, 0).module)
            self.gates.append(gate)
            self.submitters.append(sub)
            self.recorders.append(rt)
            sub_addrs.extend(rt.listen_addrs[:1])
        must = [] if sw.follow_adverts else sub_addrs
        connected = await asyncio.gather(
            *(h.call({"op": "connect", "addrs": addrs, "k": DIAL_DEGREE, "must": must}, 300.0) for h in self.groups)
        )
        failed = sum(int(c["failed_dials"]) for c in connected)
        if failed:
            self.notes.append(f"libp2p: {failed} start-up dials failed")
        if sw.follow_adverts:
            for j, rt in enumerate(self.recorders):
                targets = random.Random(j).sample(addrs, min(8, len(addrs)))
                await asyncio.gather(*(self._dial(rt, a) for a in targets))
        for sub in self.submitters:
            await sub.refresh(timeout=30.0)
        self.notes.append(f"libp2p: {sw.nodes} nodes in {self.launcher.where(groups)}")
        self._poller = asyncio.create_task(self._poll_progress())

    async def _poll_progress(self) -> None:
        while True:
            for h in self.groups:
                with contextlib.suppress(SimnetError):
                    h.progress = await h.call({"op": "progress"}, 30.0)
            await asyncio.sleep(PROGRESS_EVERY_S)

    def progress_rows(self) -> list[str]:
        rows = []
        for h in self.groups:
            p = h.progress
            if p:
                rows.append(
                    f"group {h.group} @ {h.placement.get('where', '?')}: {p['up']}/{p['nodes']} up, "
                    f"{p['tasks_run']} tasks run, {p['rss_mb']:.0f} MB"
                )
        return rows

    @staticmethod
    async def _dial(rt: RecordingTransport, addr: str) -> None:
        with contextlib.suppress(EdgenodeError):
            await rt.connect(addr, timeout=10.0)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        with contextlib.suppress(SimnetError):
            await asyncio.gather(*(h.call({"op": "stop"}, 60.0) for h in self.groups))
        await asyncio.gather(*(h.close() for h in self.groups))
        for sub in self.submitters:
            await sub.close()
        for rt in self.recorders:
            with contextlib.suppress(EdgenodeError):
                await rt.stop()
        await self.launcher.close()
        if self._p2p_tmp is not None:
            self._p2p_tmp.cleanup()
            self._p2p_tmp = None

    def _is_forger(self, peer: str) -> bool:
        return peer in self._forgers

    async def submit(self, req: TaskRequest) -> TaskOutcome:
        if req.mix.task == "migrate":  # status "skipped": never accepted, so never lost
            self._note_skip("migrate tasks (a kill here stops the node, which drains its tasks instead of "
                            "dying with them; run them on memnet)")
            return TaskOutcome(verified=False, status="skipped")
        return await super().submit(req)

    async def _each_group(self, cmd: dict[str, Any], nodes: tuple[int, ...] | None = None) -> None:
        """Send ``cmd`` to every group (``nodes`` None) or to the groups of ``nodes``, with theirs."""
        if nodes is None:
            await asyncio.gather(*(h.call(cmd) for h in self.groups))
            return
        by_group: dict[int, list[int]] = {}
        for i in nodes:
            by_group.setdefault(self.group_of[i], []).append(i)
        await asyncio.gather(*(self.groups[g].call({**cmd, "nodes": idx}) for g, idx in by_group.items()))

    async def apply(self, action: FaultAction) -> None:
        kind = action.action
        if kind in ("kill", "partition", "degrade"):
            self.faulted.update(action.nodes)
        if kind in ("kill", "restart"):
            await self._each_group({"op": kind}, action.nodes)
        elif kind == "partition":
            island = [self.ids[i] for i in action.nodes]
            everyone = self.ids + [s.transport.peer_id for s in self.submitters]
            await self._each_group({"op": "partition", "island": island, "everyone": everyone})
            for gate in self.gates:  # submitters stay with the rest, as on memnet
                await gate.block(frozenset(island))
        elif kind == "heal":
            for gate in self.gates:
                gate.heal()  # the executors redial the submitters they were cut from
            await self._each_group({"op": "heal"})
        elif kind in ("degrade", "restore"):
            await self._each_group({"op": kind, "latency_ms": action.latency_ms, "loss": action.loss}, action.nodes)
        elif kind == "byzantine":
            if action.behaviour == "forge_receipts":
                self._forgers.update(self.ids[i] for i in action.nodes)
            if action.behaviour == "poison":
                self._note_skip("byzantine poison (FL does not run on the libp2p backend)")
                return
            cmd = {"op": "byzantine", "behaviour": action.behaviour, "targets": self.ids}
            await self._each_group(cmd, action.nodes)
        else:
            raise SimnetError(f"unknown fault action {kind!r}")

    def _note_skip(self, what: str) -> None:
        if what not in self._skipped:
            self._skipped.add(what)
            self.notes.append(f"skipped on libp2p: {what}")

    async def gossip_probe(self, msg_id: str, on_deliver: Callable[[str, str], None]) -> int:
        self._on_probe = on_deliver
        self._probe_calls += 1
        if not self.recorders or (self._probe_calls - 1) % PROBE_STRIDE:
            return 0
        with contextlib.suppress(EdgenodeError):
            await self.recorders[0].publish(PROBE_TOPIC, msg_id.encode("ascii"))
            return len(self.ids)  # nodes killed or cut off at the time count as misses
        return 0

    async def run_fl(self, fl: FLSection, on_round: Callable[[FLRound], None]) -> float | None:
        self._note_skip("FL rounds (run them on memnet, or with `edgenode fl` on real nodes)")
        return None

    async def collect(self) -> SwarmState:
        sim_of: dict[str, str] = {}
        for rt in self.recorders:
            sim_of.update(rt.sim_of)
        rows: list[dict[str, Any]] = []
        answers = await asyncio.gather(*(h.call({"op": "collect"}, 120.0) for h in self.groups))
        for h, ans in zip(self.groups, answers, strict=True):
            rows.extend(ans["ledgers"])
            h.placement.update(peak_rss_mb=ans["peak_rss_mb"], cpu_s=ans["cpu_s"], written_mb=ans["written_mb"])
        drops: Counter[str] = Counter()
        byz: Counter[str] = Counter()
        ledgers = []
        forks = 0
        for r in sorted(rows, key=lambda r: int(r["index"])):
            forks += int(r["forks"])
            for k, v in r["counters"].items():
                if any(w in k for w in ("drop", "lost", "timeout", "fail")):
                    drops[k] += int(v)
            byz.update({k: int(v) for k, v in r["byz"].items()})
            for k, v in r["executor"].items():
                if k in ("rejected", "repeat", "invalid", "busy"):
                    byz[f"executor_{k}"] += int(v)
            tids = tuple(sim_of.get(t, t) for t in r["task_ids"])
            ledgers.append(
                LedgerState(r["peer"], int(r["height"]), bool(r["verified"]), r["detail"], tids, bool(r["byzantine"]))
            )
        return SwarmState(tuple(ledgers), forks, dict(drops), dict(byz))
