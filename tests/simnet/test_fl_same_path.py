"""simnet's federated path is ``edgenode run``'s: the same inputs give the same ledger bodies and topics.

One side is a simnet memnet swarm running its scenario's FL rounds; the other is one node
assembled the way ``edgenode run`` assembles it (:func:`edgenode.runtime.build_runtime`
with an ``[fl]`` section in its config), given the same key, the same ``[fl]`` section and
the same signed start command by a launcher (what ``edgenode fl start`` sends).  Round 0's
update depends only on those, so both must publish the same update bytes on the same topic
and note the same ``model_update`` body in their ledgers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from edgenode.config import FLSection, NodeConfig
from edgenode.fl import LEDGER_KIND, FLStart, launch
from edgenode.identity import Identity
from edgenode.net import GossipMessage, Transport
from edgenode.net.memnet import MemNetwork
from edgenode.runtime import build_runtime
from ledger import LedgerStore, MemoryLedgerStore
from simnet import parse_scenario
from simnet._federated import fl_start
from simnet._swarm import MemSwarm
from simnet._wrap import DelegatingTransport

SEED = 11
FL = {"enabled": True, "rounds": 1, "participants": 2, "local_epochs": 1, "alpha": 1.0, "round_timeout_s": 2.0}


def _scenario() -> dict[str, Any]:
    return {
        "swarm": {"name": "fl-path", "nodes": 2, "seed": SEED, "duration_s": 1.0},
        "links": {"lan": {"latency_ms": 1.0}},
        "profiles": {"laptop": {"slots": 1, "link": "lan"}},
        "workload": {"rate_per_s": 1.0, "mix": [{"task": "echo"}]},
        "fl": FL,
    }


class _Recording(DelegatingTransport):
    """Remembers what its node published, by topic."""

    def __init__(self, inner: Transport) -> None:
        super().__init__(inner)
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, topic: str, data: bytes) -> None:
        self.published.append((topic, data))
        await self.inner.publish(topic, data)


async def _model_updates(store: LedgerStore, author: bytes) -> list[bytes]:
    n = (await store.lengths()).get(author, 0)
    return [e.body or b"" for e in await store.range(author, 0, n) if e.kind == LEDGER_KIND]


async def _run_side(ident: Identity, section: FLSection, start: FLStart) -> tuple[bytes, list[tuple[str, bytes]]]:
    """One node as `edgenode run` builds it, started by a launcher: its first model_update body, its publishes."""
    net = MemNetwork(SEED)
    rec = _Recording(net.add_node(ident))
    store = MemoryLedgerStore()
    runtime = build_runtime(ident, NodeConfig(fl=section), rec, store)
    launcher_id = Identity.generate()
    launcher = net.add_node(launcher_id)
    await runtime.start()
    await launcher.start()
    try:
        net.wire(launcher.peer_id, ident.peer_id)
        rounds = await launch(launcher, launcher_id, start, peers=[ident.peer_id])
        assert [r.round for r in rounds] == [0]
        await runtime.chain.flush()
        bodies = await _model_updates(store, ident.public_key)
    finally:
        await launcher.stop()
        await runtime.stop()
    assert len(bodies) == 1
    return bodies[0], rec.published


async def _collect(sub: AsyncIterator[GossipMessage], out: list[GossipMessage]) -> None:
    async for msg in sub:
        out.append(msg)


async def test_simnet_fl_notes_and_publishes_what_edgenode_run_does(tmp_path: Path) -> None:
    sc = parse_scenario(_scenario())
    swarm = MemSwarm(sc, tmp_path / "swarm")
    await swarm.start()
    heard: list[GossipMessage] = []
    try:
        node = swarm.nodes[0]
        section = node.config.fl
        assert section == FLSection(partition="0/2", alpha=1.0, seed=SEED, epochs=1)  # what a user would write
        start = fl_start(sc.fl, SEED, node.clock.now_ms())
        run_body, run_published = await _run_side(node.identity, section, start)

        # edgenode run: the noted update is the one published, on the model's topic, and nothing else is
        note = json.loads(run_body)
        assert set(note) == {"model", "round", "sha256"} and note["round"] == 0
        topics = {t for t, data in run_published if hashlib.sha256(data).hexdigest() == note["sha256"]}
        assert len(topics) == 1
        (topic,) = topics

        # simnet: an observer on the same topic hears node 0's update; node 0 notes the same body
        observer = swarm.net.add_node(Identity.generate())
        await observer.start()
        for pid in swarm.ids:
            swarm.net.wire(observer.peer_id, pid)
        reader = asyncio.create_task(_collect(observer.subscribe(topic), heard))
        rounds: list[int] = []
        await swarm.run_fl(sc.fl, lambda r: rounds.append(r.round))
        assert rounds == [1]
        await node.chain.flush()
        sim_bodies = await _model_updates(node.store, node.identity.public_key)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await observer.stop()
    finally:
        await swarm.stop()
    assert sim_bodies == [run_body]
    from_node0 = [m for m in heard if m.sender == node.peer_id]
    assert [hashlib.sha256(m.data).hexdigest() for m in from_node0] == [note["sha256"]]
