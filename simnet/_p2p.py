"""The libp2p backend: real py-libp2p hosts on loopback, spread over worker processes.

The executors run in ``os.cpu_count()`` worker processes (one group per core,
:mod:`simnet._p2p_worker`), each node with its own libp2p host (TCP + Noise +
yamux, GossipSub), SQLite ledger and the real sandbox.  The submitters are
libp2p hosts in this process, running the real :class:`edgenode.tasks.Submitter`.

What works: the workload, kill and restart (a killed node stops; it comes back
on a fresh host with the same key and ledger), byzantine forge_receipts, spam
and replay.  Not on libp2p: partitions and degraded links (loopback has no link
to shape) and FL rounds; the report notes each one skipped.

Wiring for a few dozen hosts on a few cores (every gossip message costs each host
15-30 ms of CPU): staggered starts and bounded dials in the workers, a sparse random
graph (``DIAL_DEGREE``), executors dialling the submitters (not the reverse) and not
subscribing to the topics they only publish on, stretched GossipSub heartbeats
(``SIM_P2P``) and one delivery probe in ``PROBE_STRIDE``.  See docs/simnet.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgenode.errors import EdgenodeError
from edgenode.net import DROP_COUNTERS
from edgenode.net.p2p import P2PTransport
from edgenode.tasks import Submitter

from ._backend import FLRound, LedgerState, SwarmState
from ._engines import task_shape
from ._errors import SimnetError
from ._faults import FaultAction
from ._p2p_worker import SIM_P2P, quiet_gossipsub_warnings
from ._scenario import FLSection, Scenario
from ._swarm_base import PROBE_TOPIC, _identity, _SwarmBase
from ._wrap import RecordingTransport

__all__ = ["P2PSwarm", "NODES_PER_WORKER_MAX"]

NODES_PER_WORKER_MAX = 64
"""More nodes than this per worker process and a group's trio threads starve each other."""
DIAL_DEGREE = 3
"""Random executors each executor dials at start (a sparse random graph; GossipSub meshes
over it).  Everyone dialling one bootstrap host instead makes a star and GRAFT floods."""
PROBE_STRIDE = 4
"""The driver asks for a gossip probe every 0.5 s; on libp2p only every 4th is published (every
message costs each of the 50 hosts 15-30 ms of CPU: probes at 2/s alone would load a core)."""


class P2PSwarm(_SwarmBase):
    """A scenario's swarm on real libp2p, across worker processes."""

    def __init__(self, scenario: Scenario, workdir: Path | None = None) -> None:
        super().__init__(scenario, workdir)
        self.procs: list[asyncio.subprocess.Process] = []
        self.group_of: dict[int, int] = {}
        self._readers: list[asyncio.Task[None]] = []
        self._inbox: dict[tuple[int, str], asyncio.Queue[str]] = {}
        self._forgers: set[str] = set()
        self._p2p_tmp: tempfile.TemporaryDirectory[str] | None = None
        self._skipped: set[str] = set()
        self._probe_calls = 0

    async def _reader(self, g: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                break
            line = raw.decode("utf-8", "replace").rstrip("\n")
            word, _, rest = line.partition(" ")
            if word == "PROBE":
                msg_id, _, peer = rest.partition(" ")
                if self._on_probe is not None:
                    self._on_probe(msg_id, peer)
                continue
            self._box(g, word).put_nowait(rest)

    def _box(self, g: int, word: str) -> asyncio.Queue[str]:
        box = self._inbox.get((g, word))
        if box is None:
            box = self._inbox[(g, word)] = asyncio.Queue()
        return box

    async def _expect(self, g: int, word: str, timeout: float = 120.0) -> str:
        try:
            return await asyncio.wait_for(self._box(g, word).get(), timeout)
        except TimeoutError as exc:
            raise SimnetError(f"libp2p worker {g} did not answer {word} within {timeout:.0f} s") from exc

    async def _send(self, g: int, cmd: dict[str, Any]) -> None:
        proc = self.procs[g]
        assert proc.stdin is not None
        proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await proc.stdin.drain()

    async def start(self) -> None:
        sw = self.sc.swarm
        quiet_gossipsub_warnings()
        if self._workdir is None:
            self._p2p_tmp = tempfile.TemporaryDirectory(prefix="simnet-p2p-")
            root = Path(self._p2p_tmp.name)
        else:
            root = Path(self._workdir)
        groups = max(os.cpu_count() or 1, math.ceil(sw.nodes / NODES_PER_WORKER_MAX))
        groups = min(groups, sw.nodes)
        byz = sorted(self.schedule.byzantine_nodes())
        need_models = any(m.task == "infer" for m in self.sc.workload.mix) or any(
            p.models for p in self.sc.profiles.values()
        )
        for i in range(sw.nodes):
            self.ids.append(_identity(sw.seed, "node", i).peer_id)
        for g in range(groups):
            idx = list(range(g, sw.nodes, groups))
            for i in idx:
                self.group_of[i] = g
            cfg = {
                "workdir": str(root / f"group{g}"),
                "seed": sw.seed + g,
                "models": need_models,
                "advert_s": sw.advert_s,
                "replicate": sw.replicate,
                "follow_adverts": sw.follow_adverts,
                "byzantine": [i for i in byz if i in idx],
                "seeds": {str(i): _identity(sw.seed, "node", i).seed.hex() for i in idx},
                "profiles": {
                    str(i): {
                        "slots": self.sc.profiles[self.profiles[i]].slots,
                        "queue": self.sc.profiles[self.profiles[i]].queue,
                        "cost_class": self.sc.profiles[self.profiles[i]].cost_class,
                        "speed": self.sc.profiles[self.profiles[i]].speed,
                        "providers": list(self.sc.profiles[self.profiles[i]].providers),
                        "models": bool(self.sc.profiles[self.profiles[i]].models),
                    }
                    for i in idx
                },
            }
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "simnet._p2p_worker", json.dumps(cfg),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 26,
            )  # fmt: skip
            self.procs.append(proc)
            self._readers.append(asyncio.create_task(self._reader(g, proc)))
        addrs: list[str] = []
        for g in range(groups):
            ready = json.loads(await self._expect(g, "READY", timeout=300.0))
            for a in ready.values():
                addrs.extend(a[:1])
        # submitters first: with follow_adverts off, every executor dials them (so adverts reach
        # them directly, and no submitter has to dial the whole swarm at once)
        sub_addrs: list[str] = []
        for j in range(self.sc.workload.submitters):
            ident = _identity(sw.seed, "submitter", j)
            rt = RecordingTransport(P2PTransport(ident, listen=["/ip4/127.0.0.1/tcp/0"], config=SIM_P2P))
            await rt.start()
            sub = Submitter(ident, rt)
            await sub.start()
            for task in ("echo", "spin"):
                sub.add_module(task_shape(task, 0).module)
            self.submitters.append(sub)
            self.recorders.append(rt)
            sub_addrs.extend(rt.listen_addrs[:1])
        must = [] if sw.follow_adverts else sub_addrs
        for g in range(groups):
            await self._send(g, {"op": "connect", "addrs": addrs, "k": DIAL_DEGREE, "must": must})
        failed = 0
        for g in range(groups):
            failed += int(json.loads(await self._expect(g, "CONNECTED", timeout=300.0))["failed_dials"])
        if failed:
            self.notes.append(f"libp2p: {failed} start-up dials failed")
        if sw.follow_adverts:
            for j, rt in enumerate(self.recorders):
                targets = random.Random(j).sample(addrs, min(8, len(addrs)))
                await asyncio.gather(*(self._dial(rt, a) for a in targets))
        for sub in self.submitters:
            await sub.refresh(timeout=30.0)
        self.notes.append(f"libp2p: {sw.nodes} nodes in {groups} worker processes, real hosts on 127.0.0.1")

    @staticmethod
    async def _dial(rt: RecordingTransport, addr: str) -> None:
        with contextlib.suppress(EdgenodeError):
            await rt.connect(addr, timeout=10.0)

    async def stop(self) -> None:
        for g, proc in enumerate(self.procs):
            if proc.returncode is None:
                with contextlib.suppress(OSError, ConnectionError):
                    await self._send(g, {"op": "stop"})
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 30.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for t in self._readers:
            t.cancel()
        for sub in self.submitters:
            await sub.close()
        for rt in self.recorders:
            with contextlib.suppress(EdgenodeError):
                await rt.stop()
        self.procs.clear()
        if self._p2p_tmp is not None:
            self._p2p_tmp.cleanup()
            self._p2p_tmp = None

    def _is_forger(self, peer: str) -> bool:
        return peer in self._forgers

    async def apply(self, action: FaultAction) -> None:
        kind = action.action
        by_group: dict[int, list[int]] = {}
        for i in action.nodes:
            by_group.setdefault(self.group_of[i], []).append(i)
        if kind in ("kill", "restart"):
            if kind == "kill":
                self.faulted.update(action.nodes)
            for g, nodes in by_group.items():
                await self._send(g, {"op": kind, "nodes": nodes})
        elif kind == "byzantine":
            if action.behaviour == "forge_receipts":
                self._forgers.update(self.ids[i] for i in action.nodes)
            if action.behaviour == "poison":
                self._note_skip("byzantine poison (FL does not run on the libp2p backend)")
                return
            for g, nodes in by_group.items():
                await self._send(
                    g, {"op": "byzantine", "nodes": nodes, "behaviour": action.behaviour, "targets": self.ids}
                )
        else:
            self._note_skip(f"{kind} (loopback libp2p has no links to shape)")

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
            return len(self.ids)  # nodes killed at the time count as misses
        return 0

    async def run_fl(self, fl: FLSection, on_round: Callable[[FLRound], None]) -> float | None:
        self._note_skip("FL rounds (run them on memnet, or with `edgenode fl` on real nodes)")
        return None

    async def collect(self) -> SwarmState:
        sim_of: dict[str, str] = {}
        for rt in self.recorders:
            sim_of.update(rt.sim_of)
        rows: list[dict[str, Any]] = []
        for g in range(len(self.procs)):
            await self._send(g, {"op": "collect"})
            rows.extend(json.loads(await self._expect(g, "COLLECTED", timeout=120.0)))
        drops: Counter[str] = Counter()
        byz: Counter[str] = Counter()
        ledgers = []
        forks = 0
        for r in sorted(rows, key=lambda r: int(r["index"])):
            forks += int(r["forks"])
            for k, v in r["counters"].items():
                if k in DROP_COUNTERS:
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
