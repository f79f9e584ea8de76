"""A worker process of the libp2p backend: one group of real nodes on real libp2p hosts.

Started by :class:`simnet._p2p.P2PSwarm` as ``python -m simnet._p2p_worker CONFIG_JSON``.
It prints ``READY {index: [addrs]}`` once its nodes listen, then follows JSON
commands on stdin, one a line, answering on stdout:

* ``{"op": "connect", "addrs": [...], "k": 4, "must": [...]}``: each node dials ``k`` random
  executors of ``addrs`` (a sparse random mesh, not a star) and every address of ``must`` (the
  submitters); at most ``DIALS_IN_FLIGHT`` dials of the group are in flight at once;
* ``{"op": "kill"|"restart", "nodes": [...]}``: stop a node (its ledger file stays) / bring it
  back on a fresh host with the same key and ledger;
* ``{"op": "byzantine", "nodes": [...], "behaviour": "..."}``;
* ``{"op": "collect"}``: answers ``COLLECTED [ledger states]``;
* ``{"op": "stop"}``: stops every node and exits.

Each gossip probe a node receives is reported as ``PROBE <msg_id> <peer_id>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import sys
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
from ._wrap import QuietTransport

__all__ = ["main", "quiet_gossipsub_warnings", "SIM_P2P", "DIALS_IN_FLIGHT", "STARTS_IN_FLIGHT"]

PROBE_TOPIC = "simnet/probe/1"
DIALS_IN_FLIGHT = 4
"""Dials a worker has in flight at once (py-libp2p: hundreds at once break mesh formation)."""
STARTS_IN_FLIGHT = 4
"""Nodes a worker starts at once (a host start is CPU-heavy; all at once starve each other)."""
DIAL_TRIES = 3
"""Attempts at a dial that must succeed (to a submitter) before giving up on it."""
HEAD_S = 5.0
"""Ledger-head announcement period on libp2p (memnet: 1 s).  With replication on, every
executor follows every head; at one head per node per second that gossip alone outgrows two
cores at 20 hosts.  Witnesses still sync to the latest head, only later."""
SIM_P2P = P2PConfig(heartbeat_interval=2.0)
"""Tuning of the simulated hosts: tens of hosts share each core, so the per-host periodic work
(GossipSub heartbeats) is stretched; gossip itself is pushed at once."""


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class _Group:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.root = Path(cfg["workdir"])
        self.root.mkdir(parents=True, exist_ok=True)
        self.engines = SharedEngines(self.root, models=bool(cfg["models"]))
        self.runtimes: dict[int, Runtime] = {}
        self.nodes: dict[int, Node] = {}
        self.byz: dict[int, ByzantineTransport] = {}
        self.probes: list[asyncio.Task[None]] = []
        self.addrs: list[str] = []
        self.bg: list[asyncio.Task[None]] = []
        self.dials = asyncio.Semaphore(DIALS_IN_FLIGHT)
        self.quiet = frozenset(
            ([] if cfg.get("follow_adverts", False) else [ADVERT_TOPIC, WORK_TOPIC])
            + ([] if cfg["replicate"] else [HEAD_TOPIC])
        )
        """Topics the nodes publish on but do not follow (as on memnet): not subscribing keeps
        a libp2p host out of the topic's mesh, so it neither receives nor forwards them."""
        self.must: list[str] = []
        self.failed_dials = 0

    def _ident(self, i: int) -> Identity:
        return Identity(bytes.fromhex(self.cfg["seeds"][str(i)]))

    async def _make(self, i: int) -> Node:
        p = self.cfg["profiles"][str(i)]
        ident = self._ident(i)
        t: Transport = P2PTransport(ident, listen=["/ip4/127.0.0.1/tcp/0"], config=SIM_P2P)
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
        self.runtimes[i] = rt
        self.probes.append(asyncio.create_task(self._probe(rt.node)))
        return rt.node

    async def _probe(self, node: Node) -> None:
        async for msg in node.transport.subscribe(PROBE_TOPIC):
            _out(f"PROBE {msg.data.decode('ascii', 'replace')} {node.peer_id}")

    async def start(self) -> None:
        idx = [int(i) for i in self.cfg["seeds"]]
        starts = asyncio.Semaphore(STARTS_IN_FLIGHT)

        async def make(i: int) -> Node:
            async with starts:
                return await self._make(i)

        made = await asyncio.gather(*(make(i) for i in idx))
        self.nodes = dict(zip(idx, made, strict=True))
        _out("READY " + json.dumps({str(i): n.transport.listen_addrs for i, n in self.nodes.items()}))

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

    async def connect(self, addrs: list[str], k: int, must: list[str]) -> None:
        rng = random.Random(self.cfg["seed"])
        self.addrs = addrs
        self.must = must
        await asyncio.gather(*(self._join(n, rng, k) for n in self.nodes.values()))
        _out("CONNECTED " + json.dumps({"failed_dials": self.failed_dials}))

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

    async def collect(self) -> list[dict[str, Any]]:
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
        return out

    async def stop(self) -> None:
        for t in [*self.bg, *self.probes]:
            t.cancel()
        for rt in self.runtimes.values():
            with contextlib.suppress(EdgenodeError):
                await rt.stop()
        self.engines.close()


async def _serve(cfg: dict[str, Any]) -> None:
    group = _Group(cfg)
    await group.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "connect":
            await group.connect(cmd["addrs"], cmd["k"], cmd.get("must", []))
        elif op == "kill":
            await group.kill(cmd["nodes"])
        elif op == "restart":
            await group.restart(cmd["nodes"])
        elif op == "byzantine":
            group.byzantine(cmd["nodes"], cmd["behaviour"], cmd["targets"])
        elif op == "collect":
            _out("COLLECTED " + json.dumps(await group.collect()))
        elif op == "stop":
            break
    await group.stop()
    _out("STOPPED")


def quiet_gossipsub_warnings() -> None:
    """py-libp2p 0.8.1 queues every message for each connected peer not subscribed to its topic
    (up to 100 per peer, kept 30 s) and warns each time that queue overflows: thousands of lines
    a minute in a swarm where most hosts follow only some topics.  Keep its errors."""
    logging.getLogger("libp2p.pubsub.gossipsub").setLevel(logging.ERROR)


def main() -> None:
    quiet_gossipsub_warnings()
    asyncio.run(_serve(json.loads(sys.argv[1])))
    sys.stdout.flush()
    os._exit(0)  # skip the teardown that can abort in wasmtime's runtime threads


if __name__ == "__main__":
    main()
