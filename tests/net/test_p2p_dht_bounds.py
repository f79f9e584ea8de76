"""What peers can make a node's DHT keep (real py-libp2p on 127.0.0.1): provider records for a
bounded number of blobs, value records bounded, ADD_PROVIDER rate per peer."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from typing import Any

from edgenode.identity import Identity
from edgenode.net.p2p import P2PConfig, P2PTransport
from tests.net.p2p_helpers import LOOPBACK, WAIT, running

FAST = P2PConfig(dht_query_timeout=5.0, bootstrap_timeout=5.0, nat_traversal=False, autonat=False)


def node(**kw: Any) -> P2PTransport:
    return P2PTransport(Identity.generate(), listen=LOOPBACK, config=dataclasses.replace(FAST, **kw))


def dht_of(t: P2PTransport) -> Any:
    assert t._node is not None and t._node.dht is not None
    return t._node.dht


def digest(i: int) -> str:
    return hashlib.sha256(b"blob %d" % i).hexdigest()


async def in_table(t: P2PTransport) -> None:
    async with asyncio.timeout(WAIT):
        while True:
            if await t.dht_table_size() >= 1:
                return
            await asyncio.sleep(0.1)  # the table lives in the network thread: nothing to wait on


async def test_provider_records_for_others_stop_at_the_key_cap_and_own_ones_always_fit() -> None:
    keeper, announcer = node(dht_max_provider_keys=2), node()
    async with running(keeper, announcer):
        await announcer.connect(keeper.listen_addrs[0])
        await in_table(announcer)
        for i in range(4):
            await announcer.provide(digest(i))
        store = dht_of(keeper).dht.provider_store
        assert len(store.providers) == 2  # the first two blobs; the others were dropped
        assert keeper.counters["dht_provider_keys_full"] == 2
        assert await keeper.find_providers(digest(0)) == [announcer.peer_id]
        assert await keeper.provide(digest(9))  # its own announcement is kept past the cap
        assert len(store.providers) == 3


async def test_value_records_stop_at_their_cap() -> None:
    from libp2p.kad_dht.pb.kademlia_pb2 import Record

    t = node(dht_max_values=3)
    async with running(t):
        values = dht_of(t).dht.value_store
        for i in range(5):
            values.put_record(b"/pk/%d" % i, Record(key=b"/pk/%d" % i, value=b"v"))
        assert len(values.store) == 3
        assert t.counters["dht_values_full"] == 2
        values.put_record(b"/pk/0", Record(key=b"/pk/0", value=b"w"))  # a key it holds may be renewed
        assert values.store[b"/pk/0"][0].value == b"w"


async def test_one_peer_s_add_provider_messages_are_rate_limited() -> None:
    keeper, announcer = node(dht_add_provider_per_peer=3, dht_add_provider_window=60.0), node()
    async with running(keeper, announcer):
        await announcer.connect(keeper.listen_addrs[0])
        await in_table(announcer)
        for i in range(6):
            await announcer.provide(digest(i))
        assert len(dht_of(keeper).dht.provider_store.providers) == 3
