"""Strangers and the ledger (issue 13, findings 6 and 7), through the peer-facing paths over memnet.

* one unauthenticated ``LedgerRange(1, 512)`` returned the whole chain (80 MiB) in one answer;
* a witnessed stranger's chain was replicated without limit, and the witness slots went to
  whoever announced first, for ever;
* ``ledger_payload`` made any submitter's input and output permanent in the executor's ledger.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from edgenode import wire
from edgenode.config import LedgerSection, NodeConfig, NodeSection
from edgenode.identity import Identity
from edgenode.net.memnet import MemNetwork
from edgenode.node import Node, NodeTiming
from edgenode.protocol import LEDGER_PROTOCOL, PAYLOAD_KIND, LedgerEntries, LedgerRange
from edgenode.runtime import Runtime
from edgenode.sandbox import Sandbox
from edgenode.tasks import Submitter, SystemClock, TaskRequest
from ledger import Entry, MemoryLedgerStore, entry_size
from tests.runtimes import memnet_runtime

from .conftest import SwarmFactory

pytestmark = pytest.mark.timeout(60)

BIG = 300_000
"""Body bytes of one entry of the stranger's big chain."""


class WatchedStore(MemoryLedgerStore):
    """A memory store that wakes waiters after every append and every count of its authors."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Condition()
        self.held: dict[bytes, int] = {}
        """author -> highest seq appended."""

    async def _poke(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def append_many(self, entries: Iterable[Entry], *, own_signatures: bool = False) -> int:
        batch = list(entries)
        n = await super().append_many(batch, own_signatures=own_signatures)
        for e in batch:
            self.held[e.author] = max(self.held.get(e.author, 0), e.seq)
        await self._poke()
        return n

    async def authors(self) -> list[bytes]:
        out = await super().authors()
        await self._poke()
        return out

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(30), self.changed:
            await self.changed.wait_for(predicate)


def make_node(net: MemNetwork, ledger: LedgerSection | None = None, *, witness: int = 3,
              store: MemoryLedgerStore | None = None, sandbox: Sandbox | None = None,
              replicate: bool = True) -> Runtime:
    """An open-mode node on ``net`` (not started), with a memory ledger unless ``store``."""
    cfg = NodeConfig(node=NodeSection(slots=2, queue=16), ledger=ledger or LedgerSection())
    return memnet_runtime(net, cfg, store, sandbox=sandbox, timing=NodeTiming(head_s=0.05, witness=witness),
                          replicate=replicate)


async def fill(rt: Runtime, n: int, size: int) -> None:
    for _ in range(n):
        await rt.chain.append("blob", os.urandom(size))
    await rt.chain.flush()


async def stored(rt: Runtime, author: Runtime) -> tuple[int, int]:
    """(entries, bytes) of ``author``'s chain held by ``rt``'s node."""
    entries = await rt.store.range(author.identity.public_key, 1, 10_000)
    return len(entries), sum(entry_size(e) for e in entries)


async def test_a_range_answer_is_bounded_in_bytes_and_a_replica_still_syncs_it_all() -> None:
    net = MemNetwork(seed=31)
    owner, replica = make_node(net, replicate=False), make_node(net, replicate=False)  # only the explicit sync below
    await fill(owner, 12, BIG)  # 3.6 MB of chain
    stranger_id = Identity.generate()
    stranger = net.add_node(stranger_id)
    for n in (owner, replica):
        await n.start()
    await stranger.start()
    net.full_mesh()
    try:
        resp = await stranger.request(owner.peer_id, LEDGER_PROTOCOL, wire.seal(stranger_id, LedgerRange(1, 512)))
        _env, batch = wire.open_as(LedgerEntries, resp)
        assert 1 <= len(batch.entries) < 12
        assert sum(len(e) for e in batch.entries) <= LedgerSection().range_max_bytes
        assert owner.node.ledger_refusals["range_cut"] == 1
        # the replica goes on with the next range after a batch cut by bytes, and loses nothing
        assert await replica.node.sync_from(owner.peer_id) == 12
        assert (await stored(replica, owner))[0] == 12
        # one entry larger than the whole budget still goes out alone, so nobody is stuck behind it
        tiny = make_node(net, LedgerSection(range_max_bytes=1000))
        await fill(tiny, 3, 5000)
        await tiny.start()
        net.full_mesh()
        resp = await stranger.request(tiny.peer_id, LEDGER_PROTOCOL, wire.seal(stranger_id, LedgerRange(1, 512)))
        assert len(wire.open_as(LedgerEntries, resp)[1].entries) == 1
        assert await replica.node.sync_from(tiny.peer_id) == 3
        await tiny.stop()
    finally:
        await stranger.stop()
        for n in (owner, replica):
            await n.stop()


async def test_a_witnessed_strangers_chain_stops_at_its_budget_and_frees_the_slot() -> None:
    net = MemNetwork(seed=32)
    budget = 1 << 20
    store = WatchedStore()
    victim = make_node(net, LedgerSection(witness_max_bytes=budget), witness=1, store=store)
    stranger = make_node(net)
    await fill(stranger, 14, BIG)  # 4.2 MB announced by its head
    await victim.start()
    await stranger.start()
    net.full_mesh()
    honest = make_node(net)
    try:
        await store.until(lambda: victim.node.ledger_refusals["witness_budget"] == 1)
        count, held = await stored(victim, stranger)
        assert 0 < count < 14 and held <= budget
        assert stranger.peer_id not in victim.node.witnessed  # its slot is free again
        # an honest peer announcing now gets the slot and is replicated in full
        await fill(honest, 3, 100)
        await honest.start()
        net.full_mesh()
        h = honest.identity.public_key
        await store.until(lambda: store.held.get(h, 0) == 3)
        assert honest.peer_id in victim.node.witnessed
        assert (await stored(victim, stranger))[0] == count  # the stranger got no more
    finally:
        for n in (honest, stranger, victim):
            await n.stop()


async def test_witness_slots_rotate_away_from_silent_peers() -> None:
    net = MemNetwork(seed=33)
    store = WatchedStore()
    victim = make_node(net, LedgerSection(witness_idle_s=0.0), witness=1, store=store)
    first, second = make_node(net), make_node(net)
    await fill(first, 2, 100)
    await fill(second, 2, 100)
    await victim.start()
    await first.start()
    net.full_mesh()
    try:
        a = first.identity.public_key
        await store.until(lambda: store.held.get(a, 0) == 2)
        await first.stop()  # goes silent: its slot is given to the next announcer
        await second.start()
        net.full_mesh()
        b = second.identity.public_key
        await store.until(lambda: store.held.get(b, 0) == 2)
        assert victim.node.witnessed == {second.peer_id}
        assert victim.node.witnesses.counters["rotated"] == 1
    finally:
        for n in (second, victim):
            await n.stop()


async def _submit_payloads(node: Node, net: MemNetwork, cat_wasm: bytes, sizes: list[int]) -> list[bool]:
    ident = Identity.generate()
    t = net.add_node(ident)
    await t.start()
    sub = Submitter(ident, t, clock=SystemClock(), offer_window_ms=200)
    await sub.join([node.transport.listen_addrs[0]])
    module = sub.add_module(cat_wasm)
    oks = []
    try:
        for size in sizes:
            out = await sub.submit(TaskRequest("wasm", module, input=os.urandom(size), deadline_ms=10_000,
                                               ledger_payload=True))
            oks.append(out.ok)
    finally:
        await sub.close()
        await t.stop()
    return oks


async def _payload_entries(node: Node) -> int:
    await node.chain.flush()
    entries = await node.store.range(node.identity.public_key, 1, 10_000)
    return sum(1 for e in entries if e.kind == PAYLOAD_KIND)


async def test_open_mode_keeps_no_stranger_payloads_unless_configured(sandbox: Sandbox, cat_wasm: bytes,
                                                                     tmp_path: Path) -> None:
    net = MemNetwork(seed=34)
    closed = make_node(net, sandbox=sandbox)
    opened = make_node(net, LedgerSection(payload_open=True, payload_max_bytes=8192), sandbox=sandbox)
    for n in (closed, opened):
        await n.start()
    try:
        assert await _submit_payloads(closed.node, net, cat_wasm, [100_000] * 4) == [True] * 4  # the tasks still run
        assert await _payload_entries(closed.node) == 0
        assert closed.node.executor.counts["payload_not_granted"] == 4
        assert await _submit_payloads(opened.node, net, cat_wasm, [1000, 100_000]) == [True, True]
        assert await _payload_entries(opened.node) == 1  # the small one; the large one is over the cap
        assert opened.node.executor.counts["payload_too_large"] == 1
    finally:
        for n in (closed, opened):
            await n.stop()


async def test_swarm_mode_keeps_payloads_only_for_granted_roles(swarm_factory: SwarmFactory,
                                                                 cat_wasm: bytes) -> None:
    sw = await swarm_factory(1)
    node = sw.nodes[0]
    sub = await sw.client(("submitter",))
    module = sub.add_module(cat_wasm)
    out = await sub.submit(TaskRequest("wasm", module, input=b"keep me?", deadline_ms=10_000, ledger_payload=True))
    assert out.ok
    assert await _payload_entries(node) == 0
    assert node.executor.counts["payload_not_granted"] == 1
