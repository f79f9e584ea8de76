"""net.p2p beyond the LAN, on 127.0.0.1: Kademlia DHT, circuit relay v2, DCUtR, AutoNAT.

Loopback has no NAT: these tests pin the mechanics (records, reservations, relayed
dials, limits, gates, connection kinds).  The NATs themselves are in tests/nat/ (slow,
network namespaces).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Awaitable, Callable

import pytest

from edgenode.identity import Identity
from edgenode.net import MemoryBlobStore, RemoteFailure, Unreachable
from edgenode.net.p2p import P2PConfig, P2PTransport
from tests.net.p2p_helpers import LOOPBACK, WAIT, running

ECHO = "/test/echo/1"
FAST = P2PConfig(dht_query_timeout=5.0, bootstrap_timeout=5.0)


def node(config: P2PConfig = FAST, gate: Callable[[str], bool] | None = None, namespace: str = "") -> P2PTransport:
    t = P2PTransport(Identity.generate(), listen=LOOPBACK, config=config, gate=gate, namespace=namespace)

    async def echo(_sender: str, data: bytes) -> bytes:
        return data

    t.serve(ECHO, echo)
    return t


async def until(cond: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``cond`` until true, at most WAIT seconds."""
    async with asyncio.timeout(WAIT):
        while True:
            if await cond():
                return
            await asyncio.sleep(0.1)  # the condition lives in the network thread: nothing to wait on
    raise AssertionError(f"no {what} within {WAIT} s")


async def in_tables(nodes: list[P2PTransport]) -> None:
    """Wait until every node's DHT routing table holds at least one peer."""

    async def ready() -> bool:
        return all([await t.dht_table_size() >= 1 for t in nodes])

    await until(ready, "routing tables")


async def test_dht_finds_a_peer_by_id_and_the_providers_of_a_blob() -> None:
    nodes = [node() for _ in range(5)]
    blob = b"x" * 10_000
    digest = hashlib.sha256(blob).hexdigest()
    store = MemoryBlobStore()
    store.put(blob)
    nodes[1].serve_blobs(store)
    async with running(*nodes):
        for t in nodes[1:]:  # a single bootstrap peer each: node 0
            await t.connect(nodes[0].listen_addrs[0])
        await in_tables(nodes)
        addrs = await nodes[4].find_peer(nodes[3].peer_id)
        assert any(a.endswith(f"/p2p/{nodes[3].peer_id}") or "/tcp/" in a for a in addrs)
        assert await nodes[4].request(nodes[3].peer_id, ECHO, b"hi", timeout=WAIT) == b"hi"  # dialled from the DHT
        assert await nodes[4].find_peer(Identity.generate().peer_id) == []
        assert await nodes[1].provide(digest)
        assert await nodes[4].find_providers(digest) == [nodes[1].peer_id]
        assert await nodes[4].fetch_blob(nodes[1].peer_id, digest) == blob
        assert await nodes[4].find_providers(hashlib.sha256(b"other").hexdigest()) == []


async def test_a_private_dht_protocol_does_not_mix_with_the_public_one() -> None:
    private = dataclasses.replace(FAST, dht_protocol="/edgenode/swarm-x/kad/1.0.0")
    a, b, c = node(private, namespace="swarm-x"), node(private, namespace="swarm-x"), node(FAST)
    async with running(a, b, c):
        await b.connect(a.listen_addrs[0])
        await c.connect(a.listen_addrs[0])
        await until(lambda: _ge(b, 1), "b's table")
        await asyncio.sleep(1.0)  # identify has run with c too: it still must not enter a's table
        assert await a.dht_table_size() == 1
        assert await c.dht_table_size() == 0
        assert await b.find_peer(a.peer_id) != []
        digest = hashlib.sha256(b"blob").hexdigest()
        assert await a.provide(digest)
        assert await b.find_providers(digest) == [a.peer_id]
        assert await c.find_providers(digest) == []


async def _ge(t: P2PTransport, n: int) -> bool:
    return await t.dht_table_size() >= n


def relay_config(**kw: object) -> P2PConfig:
    return dataclasses.replace(FAST, relay_hop=True, nat_traversal=False, autonat=False, **kw)  # type: ignore[arg-type]


NO_PUNCH = dataclasses.replace(FAST, holepunch=False, autonat=False)


async def test_a_node_reserves_on_a_relay_and_is_reached_through_it() -> None:
    relay, dest, src = node(relay_config()), node(NO_PUNCH), node(NO_PUNCH)
    async with running(relay, dest, src):
        await dest.connect(relay.listen_addrs[0])
        await until(lambda: _true(bool(dest.relays)), "a reservation")
        assert dest.relays == [relay.peer_id]
        circuit = [a for a in dest.listen_addrs if "/p2p-circuit" in a]
        assert circuit == [f"{relay.listen_addrs[0]}/p2p-circuit/p2p/{dest.peer_id}"]
        assert await src.connect(circuit[0]) == dest.peer_id
        assert await src.request(dest.peer_id, ECHO, b"via relay", timeout=WAIT) == b"via relay"
        assert (await src.connection_kinds())[dest.peer_id] == "relayed"
        assert (await src.connection_kinds())[relay.peer_id] == "direct"
        assert relay.counters["relay_hop_streams"] >= 2  # the reservation and the circuit


async def test_a_peer_with_no_known_address_is_tried_through_the_relays_this_node_uses() -> None:
    """Neither a DHT nor an address for ``dest``: ``src`` asks its own relay for a circuit to it."""
    blind = dataclasses.replace(NO_PUNCH, dht=False)
    relay, dest, src = node(relay_config()), node(NO_PUNCH), node(blind)
    async with running(relay, dest, src):
        await dest.connect(relay.listen_addrs[0])
        await src.connect(relay.listen_addrs[0])
        await until(lambda: _true(bool(dest.relays) and bool(src.relays)), "reservations")
        assert await src.request(dest.peer_id, ECHO, b"guessed", timeout=WAIT) == b"guessed"
        assert (await src.connection_kinds())[dest.peer_id] == "relayed"
        stranger = Identity.generate().peer_id  # no slot on the relay: refused, and said so
        with pytest.raises(Unreachable, match="through its relay"):
            await src.request(stranger, ECHO, b"x", timeout=WAIT)


async def test_one_circuit_ending_leaves_another_to_the_same_peer_up() -> None:
    """py-libp2p 0.8.1's relay files circuits by peer id and the first to end closed the other's streams."""
    relay, dest, s1, s2 = node(relay_config()), node(NO_PUNCH), node(NO_PUNCH), node(NO_PUNCH)
    async with running(relay, dest, s1, s2):
        await dest.connect(relay.listen_addrs[0])
        await until(lambda: _true(bool(dest.relays)), "a reservation")
        circuit = next(a for a in dest.listen_addrs if "/p2p-circuit" in a)
        for s in (s1, s2):
            await s.connect(circuit)
            assert await s.request(dest.peer_id, ECHO, b"up", timeout=WAIT) == b"up"
        await s1.disconnect(dest.peer_id)  # the older circuit ends...
        await asyncio.sleep(1.0)  # ...and its relay pumps wind down
        assert (await s2.connection_kinds()).get(dest.peer_id) == "relayed"  # ...the newer one stays
        for i in range(5):
            assert await s2.request(dest.peer_id, ECHO, b"%d" % i, timeout=WAIT) == b"%d" % i
        assert relay.counters["relay_hop_streams"] >= 3


async def _true(v: bool) -> bool:
    return v


async def test_dcutr_upgrades_a_relayed_connection_to_a_direct_one() -> None:
    punch = dataclasses.replace(FAST, autonat=False)
    relay, dest, src = node(relay_config()), node(punch), node(punch)
    async with running(relay, dest, src):
        await dest.connect(relay.listen_addrs[0])
        await until(lambda: _true(bool(dest.relays)), "a reservation")
        circuit = next(a for a in dest.listen_addrs if "/p2p-circuit" in a)
        await src.connect(circuit)

        async def punched() -> bool:
            return (await src.connection_kinds()).get(dest.peer_id) == "holepunched"

        await until(punched, "a hole-punched connection")
        assert await src.request(dest.peer_id, ECHO, b"direct", timeout=WAIT) == b"direct"


async def test_the_relay_gate_refuses_reservations_and_circuits() -> None:
    relay, dest = node(relay_config(), gate=lambda _peer: False), node(NO_PUNCH)
    async with running(relay, dest):
        await dest.connect(relay.listen_addrs[0])
        await until(lambda: _true(relay.counters.get("relay_refused_non_member", 0) >= 1), "a refusal")
        assert dest.relays == []
        assert not any("/p2p-circuit" in a for a in dest.listen_addrs)
        src = node(NO_PUNCH)
        async with running(src):
            await src.connect(relay.listen_addrs[0])
            with pytest.raises(Unreachable):
                await src.connect(f"{relay.listen_addrs[0]}/p2p-circuit/p2p/{dest.peer_id}")


async def test_the_relay_cuts_a_circuit_past_its_byte_budget() -> None:
    relay, dest, src = node(relay_config(relay_max_bytes=64 << 10)), node(NO_PUNCH), node(NO_PUNCH)
    async with running(relay, dest, src):
        await dest.connect(relay.listen_addrs[0])
        await until(lambda: _true(bool(dest.relays)), "a reservation")
        await src.connect(next(a for a in dest.listen_addrs if "/p2p-circuit" in a))
        assert await src.request(dest.peer_id, ECHO, b"small", timeout=WAIT) == b"small"
        with pytest.raises((RemoteFailure, Unreachable, TimeoutError)):
            for _ in range(4):
                await src.request(dest.peer_id, ECHO, b"y" * (48 << 10), timeout=5.0)


async def test_autonat_finds_a_loopback_node_reachable() -> None:
    a, b = node(dataclasses.replace(FAST, nat_traversal=False)), node(dataclasses.replace(FAST, nat_traversal=False))
    async with running(a, b):
        assert a.reachability == "unknown"
        await a.connect(b.listen_addrs[0])
        await until(lambda: _true(a.reachability == "public" and b.reachability == "public"), "AutoNAT verdicts")


async def test_autonat_dial_backs_leave_the_connection_in_use_alone(caplog: pytest.LogCaptureFixture) -> None:
    """A dial-back used to be a second swarm connection, and the swarm (one connection per peer)
    then closed the older one, the one in use: behind a NAT, the one carrying the relay
    reservation and circuits."""
    a, b = node(dataclasses.replace(FAST, nat_traversal=False)), node(dataclasses.replace(FAST, nat_traversal=False))
    async with running(a, b):
        # the swarm trims only connections older than its grace period (20 s): 0.3 s here, so
        # the connection in use is old by the time AutoNAT's first dial-back comes (~1 s)
        assert b._node is not None
        b._node._host.get_network().connection_config.grace_period = 0.3
        await a.connect(b.listen_addrs[0])
        assert await a.request(b.peer_id, ECHO, b"before", timeout=WAIT) == b"before"
        opened = a.counters["channels_opened"]
        await until(lambda: _true(a.reachability == "public"), "b's dial-back to a")
        await asyncio.sleep(1.0)
        for i in range(3):
            assert await a.request(b.peer_id, ECHO, b"%d" % i, timeout=WAIT) == b"%d" % i
        assert a.counters["channels_opened"] == opened  # the same connection carried them all
        assert b.peer_id in a.peers()
    # the asker saw the dial-back close after the handshake: churn, not an error on its stderr
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "upgrade mux" in r.getMessage()]


def test_net_config_reaches_the_transport_and_swarm_mode_gets_a_private_dht() -> None:
    from edgenode.cli._run import p2p_config
    from edgenode.config import NetSection, NodeConfig

    net = NetSection(relay=True, relay_max_reservations=3, relay_max_circuits=2, relay_max_bytes=1 << 20,
                     relay_max_duration_s=30, nat_traversal=False, dht=True)
    c = p2p_config(NodeConfig(net=net))
    assert (c.relay_hop, c.relay_max_reservations, c.relay_max_circuits, c.relay_max_bytes, c.relay_max_duration) == (
        True, 3, 2, 1 << 20, 30)
    assert (c.nat_traversal, c.holepunch, c.dht_protocol) == (False, False, "/ipfs/kad/1.0.0")
    assert p2p_config(NodeConfig(net=net), "12D3KooWswarm").dht_protocol == "/edgenode/12D3KooWswarm/kad/1.0.0"
