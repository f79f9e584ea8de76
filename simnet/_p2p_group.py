"""One group of real nodes on real libp2p hosts: what a libp2p worker process or a Ray actor hosts.

:class:`NodeGroup` owns its nodes (each a runtime built by ``build_runtime`` over a
:class:`~edgenode.net.p2p.P2PTransport`, a SQLite ledger in the group's directory and the
shared sandbox) and answers commands, plain JSON-able dicts, through one method,
:meth:`NodeGroup.handle`.  The worker process (:mod:`simnet._p2p_worker`) reads them from
stdin; the Ray actor (:mod:`simnet._ray`) gets them as actor calls.  The commands:

* ``{"op": "start", "cfg": {...}}``: build and start the nodes; answers ``{index: [addrs]}``;
* ``{"op": "connect", "addrs": [...], "k": 3, "must": [...]}``: each node dials ``k`` random
  executors of ``addrs`` (a sparse random mesh, not a star) and every address of ``must`` (the
  submitters); at most ``DIALS_IN_FLIGHT`` dials of the group in flight; answers ``{"failed_dials": n}``;
* ``{"op": "kill"|"restart", "nodes": [...]}``: stop a node (its ledger file stays) / bring it
  back on a fresh host with the same key and ledger;
* ``{"op": "partition", "island": [peer ids], "everyone": [peer ids]}``: the island's nodes keep
  to themselves, the others keep away from the island (:class:`~simnet._p2p_gate.GatedTransport`);
  ``{"op": "heal"}`` ends it and redials the connections it closed;
* ``{"op": "degrade", "nodes": [...], "latency_ms": x, "loss": p}`` / ``{"op": "restore", "nodes": [...]}``;
* ``{"op": "byzantine", "nodes": [...], "behaviour": "...", "targets": [peer ids]}``;
* ``{"op": "progress"}``: nodes up, tasks executed, this process's RSS;
* ``{"op": "collect"}``: every node's audited ledger and counters, the process's peak RSS, CPU
  seconds and bytes written;
* ``{"op": "stop"}``: stops every node.

Each gossip probe a node receives is passed to ``on_probe(msg_id, peer_id)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import resource
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgenode.config import NodeConfig, NodeSection
from edgenode.errors import EdgenodeError
from edgenode.identity import Identity
from edgenode.net import Transport
from edgenode.net.p2p import P2PConfig, P2PTransport
from edgenode.node import Node, NodeTiming
from edgenode.protocol import ADVERT_TOPIC, HEAD_TOPIC, WORK_TOPIC
from edgenode.runtime import Runtime, build_runtime
from ledger import SqliteLedgerStore

from ._audit import audit_own_chain
from ._byzantine import ByzantineTransport, replay_specs, spam_burst
from ._engines import NodeInfer, NodeWasm, SharedEngines
from ._errors import SimnetError
from ._p2p_gate import GatedTransport, peer_of_addr
from ._swarm_base import PROBE_TOPIC
from ._wrap import QuietTransport

__all__ = [
    "NodeGroup",
    "quiet_gossipsub_warnings",
    "peak_rss_mb",
    "SIM_P2P",
    "DIALS_IN_FLIGHT",
    "STARTS_IN_FLIGHT",
    "HEAD_S",
]

DIALS_IN_FLIGHT = 4
"""Dials a group has in flight at once (py-libp2p: hundreds at once break mesh formation)."""
STARTS_IN_FLIGHT = 4
"""Nodes a group starts at once (a host start is CPU-heavy; all at once starve each other)."""
DIAL_TRIES = 3
"""Attempts at a dial that must succeed (to a submitter) before giving up on it."""
HEAD_S = 5.0
"""Ledger-head announcement period on libp2p (memnet: 1 s).  With replication on, every
executor follows every head; at one head per node per second that gossip alone outgrows two
cores at 20 hosts.  Witnesses still sync to the latest head, only later."""
SIM_P2P = P2PConfig(heartbeat_interval=2.0)
"""Tuning of the simulated hosts: tens of hosts share each core, so the per-host periodic work
(GossipSub heartbeats) is stretched; gossip itself is pushed at once."""


def quiet_gossipsub_warnings() -> None:
    """py-libp2p 0.8.1 queues every message for each connected peer not subscribed to its topic
    (up to 100 per peer, kept 30 s) and warns each time that queue overflows: thousands of lines
    a minute in a swarm where most hosts follow only some topics.  Keep its errors."""
    logging.getLogger("libp2p.pubsub.gossipsub").setLevel(logging.ERROR)


def peak_rss_mb() -> float:
    """This process's peak resident set size, in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def process_usage() -> dict[str, float]:
    """This process's CPU seconds (user + system, every thread) and bytes written by write()
    calls (sockets and files alike: an upper bound of what its hosts sent), from /proc."""
    cpu = sum(os.times()[:2])
    written = 0.0
    with contextlib.suppress(OSError, ValueError, KeyError):
        with open("/proc/self/io") as f:
            fields = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        written = float(fields["wchar"])
    return {"cpu_s": round(cpu, 2), "written_mb": round(written / 1e6, 2)}


def _rss_mb() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / (1 << 20)
    return peak_rss_mb()


class NodeGroup:
    """A group of real nodes, driven by :meth:`handle`."""

    def __init__(self, on_probe: Callable[[str, str], None]) -> None:
        self.on_probe = on_probe
        self.cfg: dict[str, Any] = {}
        self.root = Path()
        self._own_dir = False
        self.engines: SharedEngines | None = None
        self.runtimes: dict[int, Runtime] = {}
        self.nodes: dict[int, Node] = {}
        self.gates: dict[int, GatedTransport] = {}
        self.byz: dict[int, ByzantineTransport] = {}
        self.probes: list[asyncio.Task[None]] = []
        self.bg: list[asyncio.Task[None]] = []
        self.dials = asyncio.Semaphore(DIALS_IN_FLIGHT)
        self.quiet: frozenset[str] = frozenset()
        self.addrs: list[str] = []
        self.must: list[str] = []
        self.addr_of: dict[str, str] = {}
        self.island: frozenset[str] | None = None
        self.everyone: frozenset[str] = frozenset()
        self.degraded: dict[int, tuple[float, float]] = {}
        self.failed_dials = 0
        self._stopped = False

    async def handle(self, cmd: dict[str, Any]) -> Any:
        """Run one command (see the module docstring) and return its JSON-able answer."""
        op = cmd.get("op")
        if op == "start":
            return await self.start(cmd["cfg"])
        if op == "connect":
            return await self.connect(cmd["addrs"], int(cmd["k"]), cmd.get("must", []))
        if op == "kill":
            return await self.kill(cmd["nodes"])
        if op == "restart":
            return await self.restart(cmd["nodes"])
        if op == "partition":
            return await self.partition(frozenset(cmd["island"]), frozenset(cmd["everyone"]))
        if op == "heal":
            return await self.heal()
        if op in ("degrade", "restore"):
            return self.degrade(cmd["nodes"], float(cmd.get("latency_ms", 0.0)), float(cmd.get("loss", 0.0)), op)
        if op == "byzantine":
            return self.byzantine(cmd["nodes"], cmd["behaviour"], cmd["targets"])
        if op == "progress":
            return self.progress()
        if op == "collect":
            return await self.collect()
        if op == "stop":
            return await self.stop()
        raise SimnetError(f"unknown group command {op!r}")

    # -- nodes --------------------------------------------------------------------------
    def _ident(self, i: int) -> Identity:
        return Identity(bytes.fromhex(self.cfg["seeds"][str(i)]))

    def _blocked(self, peer: str) -> frozenset[str]:
        if self.island is None:
            return frozenset()
        return self.everyone - self.island if peer in self.island else self.island

    async def _make(self, i: int) -> Node:
        assert self.engines is not None
        p = self.cfg["profiles"][str(i)]
        ident = self._ident(i)
        raw = P2PTransport(ident, listen=[f"/ip4/{self.cfg['listen_ip']}/tcp/0"], config=SIM_P2P)
        gate = GatedTransport(raw, seed=i)
        if i in self.degraded:
            gate.degrade(*self.degraded[i])
        t: Transport = gate
        if self.quiet:
            t = QuietTransport(t, self.quiet)
        if i in self.cfg["byzantine"]:
            bz = ByzantineTransport(t, ident)
            bz.behaviours = self.byz[i].behaviours if i in self.byz else set()
            self.byz[i] = bz
            t = bz
        store = await SqliteLedgerStore.open(self.root / f"node{i:05d}.db", synchronous="NORMAL")
        models = [self.engines.digits_hash] if p["models"] and self.engines.digits_hash else []
        rt = build_runtime(
            ident,
            NodeConfig(node=NodeSection(slots=p["slots"], queue=p["queue"], cost_class=p["cost_class"])),
            t,
            store,
            sandbox=NodeWasm(self.engines, p["speed"]),
            registry=NodeInfer(self.engines, models, p["providers"], p["speed"]),
            timing=NodeTiming(advert_s=self.cfg["advert_s"], head_s=HEAD_S, drain_s=5.0),
            replicate=self.cfg["replicate"],
            fl=False,
        )
        await rt.start()
        await gate.block(self._blocked(ident.peer_id))
        self.runtimes[i] = rt
        self.gates[i] = gate
        self.probes.append(asyncio.create_task(self._probe(rt.node)))
        return rt.node

    async def _probe(self, node: Node) -> None:
        async for msg in node.transport.subscribe(PROBE_TOPIC):
            self.on_probe(msg.data.decode("ascii", "replace"), node.peer_id)

    async def start(self, cfg: dict[str, Any]) -> dict[str, list[str]]:
        self.cfg = cfg
        if cfg.get("workdir"):
            self.root = Path(cfg["workdir"])
            self.root.mkdir(parents=True, exist_ok=True)
        else:  # a Ray actor on another machine: its own directory there, removed at stop
            self.root = Path(tempfile.mkdtemp(prefix=f"simnet-group{cfg.get('group', 0)}-"))
            self._own_dir = True
        self.engines = SharedEngines(self.root, models=bool(cfg["models"]))
        self.quiet = frozenset(
            ([] if cfg.get("follow_adverts", False) else [ADVERT_TOPIC, WORK_TOPIC])
            + ([] if cfg["replicate"] else [HEAD_TOPIC])
        )
        """Topics the nodes publish on but do not follow (as on memnet): not subscribing keeps
        a libp2p host out of the topic's mesh, so it neither receives nor forwards them."""
        idx = [int(i) for i in cfg["seeds"]]
        starts = asyncio.Semaphore(STARTS_IN_FLIGHT)

        async def make(i: int) -> Node:
            async with starts:
                return await self._make(i)

        made = await asyncio.gather(*(make(i) for i in idx))
        self.nodes = dict(zip(idx, made, strict=True))
        return {str(i): n.transport.listen_addrs for i, n in self.nodes.items()}

    async def _dial(self, node: Node, addr: str, tries: int = 1) -> bool:
        for _ in range(tries):
            async with self.dials:
                try:
                    await node.transport.connect(addr, timeout=15.0)
                    return True
                except EdgenodeError:
                    continue
        self.failed_dials += 1
        return False

    async def _join(self, node: Node, rng: random.Random, k: int) -> None:
        mine = set(node.transport.listen_addrs)
        others = [a for a in self.addrs if a not in mine]
        picks = rng.sample(others, min(k, len(others)))
        await asyncio.gather(
            *(self._dial(node, a, DIAL_TRIES) for a in self.must), *(self._dial(node, a) for a in picks)
        )

    async def connect(self, addrs: list[str], k: int, must: list[str]) -> dict[str, int]:
        rng = random.Random(self.cfg["seed"])
        self.addrs = addrs
        self.must = must
        self.addr_of = {peer_of_addr(a): a for a in [*addrs, *must]}
        await asyncio.gather(*(self._join(n, rng, k) for n in self.nodes.values()))
        return {"failed_dials": self.failed_dials}

    async def kill(self, nodes: list[int]) -> None:
        for i in nodes:
            rt = self.runtimes.get(i)
            if rt is not None and rt.running:
                with contextlib.suppress(EdgenodeError):
                    await rt.stop()

    async def restart(self, nodes: list[int]) -> None:
        for i in nodes:
            node = self.nodes.get(i)
            if node is None or node.running:
                continue
            self.nodes[i] = new = await self._make(i)
            await self._join(new, random.Random(i), 4)

    # -- faults at the nodes' edges -------------------------------------------------------
    def _live_gates(self) -> list[tuple[Node, GatedTransport]]:
        return [(n, self.gates[i]) for i, n in self.nodes.items() if n.running and i in self.gates]

    async def partition(self, island: frozenset[str], everyone: frozenset[str]) -> None:
        self.island, self.everyone = island, everyone
        await asyncio.gather(*(g.block(self._blocked(n.peer_id)) for n, g in self._live_gates()))

    async def heal(self) -> None:
        self.island = None
        redial = []
        for node, gate in self._live_gates():
            for peer in gate.heal():
                if peer in self.addr_of:
                    redial.append(self._dial(node, self.addr_of[peer]))
        await asyncio.gather(*redial)

    def degrade(self, nodes: list[int], latency_ms: float, loss: float, op: str) -> None:
        for i in nodes:
            if op == "degrade":
                self.degraded[i] = (latency_ms, loss)
            else:
                self.degraded.pop(i, None)
            gate = self.gates.get(i)
            if gate is not None and op == "degrade":
                gate.degrade(latency_ms, loss)
            elif gate is not None:
                gate.restore()

    def byzantine(self, nodes: list[int], behaviour: str, targets: list[str]) -> None:
        for i in nodes:
            bz = self.byz.get(i)
            if bz is None:
                continue
            bz.behaviours.add(behaviour)
            if behaviour == "spam":
                self.bg.append(asyncio.create_task(self._spam(bz, targets)))
            elif behaviour == "replay":
                self.bg.append(asyncio.create_task(self._replay(bz, targets)))

    async def _spam(self, bz: ByzantineTransport, victims: list[str]) -> None:
        while True:
            await spam_burst(bz, victims[:8], n=10)
            await asyncio.sleep(0.2)

    async def _replay(self, bz: ByzantineTransport, targets: list[str]) -> None:
        rng = random.Random(0xBAD)
        while True:
            await replay_specs(bz, targets, rng)
            await asyncio.sleep(0.3)

    # -- reports ----------------------------------------------------------------------------
    def progress(self) -> dict[str, Any]:
        ran = sum(v for n in self.nodes.values() for k, v in n.executor.counts.items() if k.startswith("status:"))
        up = sum(1 for n in self.nodes.values() if n.running)
        return {"nodes": len(self.nodes), "up": up, "tasks_run": ran, "rss_mb": round(_rss_mb(), 1)}

    async def collect(self) -> dict[str, Any]:
        out = []
        for i, node in sorted(self.nodes.items()):
            with contextlib.suppress(EdgenodeError):
                await node.chain.flush()
            store = node.store
            audit = await audit_own_chain(store, node.identity.public_key)
            counts = dict(node.executor.counts)
            byz = dict(self.byz[i].counts) if i in self.byz else {}
            out.append(
                {
                    "index": i, "peer": node.peer_id, "height": audit.height, "verified": audit.verified,
                    "detail": audit.detail, "task_ids": list(audit.task_ids), "forks": len(await store.forks()),
                    "byzantine": i in self.byz,
                    "counters": node.transport.counters, "executor": counts, "byz": byz,
                }
            )  # fmt: skip
        return {"ledgers": out, "peak_rss_mb": round(peak_rss_mb(), 1), **process_usage()}

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for t in [*self.bg, *self.probes]:
            t.cancel()
        for rt in self.runtimes.values():
            with contextlib.suppress(EdgenodeError):
                await rt.stop()
        if self.engines is not None:
            self.engines.close()
            self.engines = None
        if self._own_dir:
            shutil.rmtree(self.root, ignore_errors=True)
