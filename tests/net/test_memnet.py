"""memnet-only behaviour: links, partitions, crash/restart, mesh, queues."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from edgenode.errors import LocalError
from edgenode.net import (
    GossipMessage,
    MemoryBlobStore,
    NotRunning,
    PeerEvent,
    PeerEventKind,
    RequestTimeout,
    Unreachable,
)
from edgenode.net.memnet import Delivery, LinkSpec, MemNetwork, MemTransport

WAIT = 10.0
HEARTBEAT_S = 0.02
"""A short lazy-gossip heartbeat keeps ``drain()`` quick in tests."""


def mknet(**kwargs: Any) -> MemNetwork:
    return MemNetwork(heartbeat_s=HEARTBEAT_S, **kwargs)


async def started(net: MemNetwork, n: int, prefix: str = "n") -> list[MemTransport]:
    nodes = [net.add_node(f"{prefix}{i}") for i in range(n)]
    for t in nodes:
        await t.start()
    return nodes


async def stop_all(nodes: Sequence[MemTransport]) -> None:
    for t in nodes:
        await t.stop()


async def take(sub: AsyncIterator[GossipMessage], n: int) -> list[GossipMessage]:
    out: list[GossipMessage] = []
    async with asyncio.timeout(WAIT):
        while len(out) < n:
            out.append(await anext(sub))
    return out


async def event(events: AsyncIterator[PeerEvent]) -> PeerEvent:
    async with asyncio.timeout(WAIT):
        return await anext(events)


def recorder(net: MemNetwork) -> list[Delivery]:
    log: list[Delivery] = []
    net.add_observer(log.append)
    return log


async def test_mesh_degree_is_bounded_and_symmetric() -> None:
    net = mknet(seed=3, gossip_degree=4)
    nodes = await started(net, 30)
    subs = [t.subscribe("t") for t in nodes]
    net.full_mesh()
    target, high = net.gossip_degree
    assert (target, high) == (4, 8)
    for t in nodes:
        assert len(t.peers()) == 29
        mesh = t.mesh_peers("t")
        assert target <= len(mesh) <= high
        for p in mesh:
            assert t.peer_id in net.transport(p).mesh_peers("t")
    # a publish goes to the mesh only, not to all 29 peers, yet reaches everyone by forwarding
    log = recorder(net)
    await nodes[0].publish("t", b"x")
    await net.drain()
    assert nodes[0].counters["gossip_sent"] == len(nodes[0].mesh_peers("t")) < 29
    assert sorted(d.peer for d in log) == sorted(t.peer_id for t in nodes[1:])
    assert max(d.hops for d in log) >= 2
    for s in subs[1:]:
        assert [m.data for m in await take(s, 1)] == [b"x"]
    await stop_all(nodes)


async def test_mesh_repairs_when_peers_leave() -> None:
    net = mknet(seed=5, gossip_degree=3)
    nodes = await started(net, 12)
    for t in nodes:
        t.subscribe("t")
    net.full_mesh()
    victim = nodes[0]
    neighbours = [net.transport(p) for p in victim.mesh_peers("t")]
    net.crash(victim.peer_id)
    for t in neighbours:
        assert victim.peer_id not in t.mesh_peers("t")
        assert len(t.mesh_peers("t")) >= 3
    await stop_all(nodes)


async def test_unsubscribed_publisher_uses_fanout() -> None:
    net = mknet(seed=1, gossip_degree=2)
    nodes = await started(net, 6)
    subs = [t.subscribe("t") for t in nodes[1:]]
    net.full_mesh()
    await nodes[0].publish("t", b"from outside")
    await net.drain()
    assert nodes[0].counters["gossip_sent"] == 2
    for s in subs:
        assert (await take(s, 1))[0].sender == nodes[0].peer_id
    await stop_all(nodes)


async def test_latency_adds_per_hop() -> None:
    net = mknet(seed=1, default_link=LinkSpec(latency_ms=40))
    a, b, c = await started(net, 3)
    for t in (b, c):
        t.subscribe("t")
    net.wire("n0", "n1")
    net.wire("n1", "n2")
    log = recorder(net)
    await a.publish("t", b"m")
    await net.drain()
    by_peer = {d.peer: d for d in log}
    assert by_peer["n1"].hops == 1
    assert by_peer["n2"].hops == 2
    assert by_peer["n1"].delivered_at - by_peer["n1"].published_at == pytest.approx(0.040)
    assert by_peer["n2"].delivered_at - by_peer["n2"].published_at == pytest.approx(0.080)
    await stop_all([a, b, c])


async def test_jitter_spreads_delays_within_bounds() -> None:
    net = mknet(seed=2, default_link=LinkSpec(latency_ms=20, jitter_ms=5))
    a, b = await started(net, 2)
    b.subscribe("t")
    net.wire("n0", "n1")
    log = recorder(net)
    for i in range(50):
        await a.publish("t", b"%d" % i)
    await net.drain()
    delays = [d.delivered_at - d.published_at for d in log]
    assert len(delays) == 50
    assert all(0.015 - 1e-9 <= x <= 0.025 + 1e-9 for x in delays)
    assert max(delays) - min(delays) > 0.002
    await stop_all([a, b])


async def test_loss_drops_gossip_and_requests() -> None:
    net = mknet(seed=4, default_link=LinkSpec(loss=0.3))
    a, b = await started(net, 2)
    sub = b.subscribe("t")
    net.wire("n0", "n1")
    for i in range(200):
        await a.publish("t", b"%d" % i)
    await net.drain()
    lost = a.counters["gossip_lost"]
    assert 20 < lost < 100
    assert b.counters["gossip_delivered"] == 200 - lost
    assert len(await take(sub, 200 - lost)) == 200 - lost
    net.set_link("n0", "n1", LinkSpec(loss=1.0))

    async def echo(_s: str, d: bytes) -> bytes:
        return d

    b.serve("/echo", echo)
    with pytest.raises(RequestTimeout):
        await a.request("n1", "/echo", b"x", timeout=0.2)
    assert a.counters["requests_lost"] == 1
    assert a.counters["requests_timed_out"] == 1
    await stop_all([a, b])


async def test_request_round_trip_takes_two_link_delays() -> None:
    net = mknet(seed=1, default_link=LinkSpec(latency_ms=30))
    a, b = await started(net, 2)

    async def echo(_s: str, d: bytes) -> bytes:
        return d

    b.serve("/echo", echo)
    net.wire("n0", "n1")
    t0 = net.now()
    assert await a.request("n1", "/echo", b"ping") == b"ping"
    assert net.now() - t0 >= 0.060 - 1e-3
    await stop_all([a, b])


async def test_bandwidth_sets_blob_transfer_time() -> None:
    net = mknet(seed=1)
    a, b = await started(net, 2)
    net.set_link("n0", "n1", LinkSpec(bandwidth_bps=8_000_000))  # 1 MB/s
    assert net.link("n1", "n0").bandwidth_bps == 8_000_000
    store = MemoryBlobStore()
    blob = os.urandom(100_000)
    digest = store.put(blob)
    b.serve_blobs(store)
    net.wire("n0", "n1")
    t0 = net.now()
    assert await a.fetch_blob("n1", digest) == blob
    assert net.now() - t0 >= 0.1 - 1e-3
    await stop_all([a, b])


async def test_class_links_apply_between_classes() -> None:
    net = mknet(seed=1, default_link=LinkSpec(latency_ms=1))
    pi = net.add_node("pi", node_class="pi")
    cloud = net.add_node("cloud", node_class="cloud")
    other = net.add_node("laptop")
    net.set_class_link("pi", "cloud", LinkSpec(latency_ms=80))
    assert net.link("cloud", "pi").latency_ms == 80
    assert net.link("pi", "laptop").latency_ms == 1
    net.set_link("pi", "cloud", LinkSpec(latency_ms=5))
    assert net.link("pi", "cloud").latency_ms == 5
    assert pi.node_class == "pi" and cloud.node_class == "cloud" and other.node_class == "default"


async def test_partition_and_heal() -> None:
    net = mknet(seed=9)
    nodes = await started(net, 6)
    subs = {t.peer_id: t.subscribe("t") for t in nodes}
    net.full_mesh()
    events = nodes[0].peer_events()
    left, right = ["n0", "n1", "n2"], ["n3", "n4", "n5"]
    net.partition([left, right])
    assert sorted(nodes[0].peers()) == ["n1", "n2"]
    assert sorted([(await event(events)).peer for _ in range(3)]) == right
    with pytest.raises(Unreachable):
        await nodes[0].request("n3", "/x", b"", timeout=1.0)
    with pytest.raises(Unreachable):
        await nodes[0].connect("/memory/n4/p2p/n4")
    log = recorder(net)
    await nodes[0].publish("t", b"left only")
    await net.drain()
    assert sorted(d.peer for d in log) == ["n1", "n2"]
    net.heal()
    assert len(nodes[0].peers()) == 5
    assert {(await event(events)).kind for _ in range(3)} == {PeerEventKind.JOIN}
    log.clear()
    await nodes[0].publish("t", b"everyone")
    await net.drain()
    assert sorted(d.peer for d in log) == [f"n{i}" for i in range(1, 6)]
    assert [m.data for m in await take(subs["n4"], 1)] == [b"everyone"]
    await stop_all(nodes)


async def test_crash_and_restart() -> None:
    net = mknet(seed=11, default_link=LinkSpec(latency_ms=5))
    a, b, c = await started(net, 3)
    never, entered = asyncio.Event(), asyncio.Event()

    async def stuck(_s: str, _d: bytes) -> bytes:
        entered.set()
        await never.wait()
        return b""

    async def echo(_s: str, d: bytes) -> bytes:
        return d

    b.serve("/stuck", stuck)
    b.serve("/echo", echo)
    sub_b = b.subscribe("t")
    c.subscribe("t")
    net.full_mesh()
    events = a.peer_events()
    pending = asyncio.ensure_future(a.request("n1", "/stuck", b"x", timeout=WAIT))
    async with asyncio.timeout(WAIT):
        await entered.wait()
    net.crash("n1")
    assert not net.is_up("n1") and b.crashed
    with pytest.raises(Unreachable):
        await pending
    assert await event(events) == PeerEvent(PeerEventKind.LEAVE, "n1")
    assert "n1" not in a.peers()
    with pytest.raises(Unreachable):
        await a.request("n1", "/echo", b"x", timeout=1.0)
    with pytest.raises(Unreachable):
        await b.request("n0", "/echo", b"x", timeout=1.0)
    await b.publish("t", b"from the dead")
    assert b.counters["gossip_dropped_crashed"] == 1
    await a.publish("t", b"while b is down")
    await net.drain()
    with pytest.raises(LocalError):
        net.crash("n1")
    net.restart("n1")
    assert await event(events) == PeerEvent(PeerEventKind.JOIN, "n1")
    assert await a.request("n1", "/echo", b"back", timeout=WAIT) == b"back"
    await a.publish("t", b"after restart")
    assert [m.data for m in await take(sub_b, 1)] == [b"after restart"]
    with pytest.raises(LocalError):
        net.restart("n1")
    await stop_all([a, b, c])


async def test_queue_full_drops_and_counts() -> None:
    net = mknet(seed=1, queue_size=4)
    a, b = await started(net, 2)
    sub = b.subscribe("t")
    net.wire("n0", "n1")
    for i in range(10):
        await a.publish("t", b"%d" % i)
    await net.drain()
    assert b.counters["gossip_dropped_slow_subscriber"] == 6
    assert [m.data for m in await take(sub, 4)] == [b"0", b"1", b"2", b"3"]
    await stop_all([a, b])


async def test_failing_validator_rejects() -> None:
    net = mknet(seed=1)
    a, b = await started(net, 2)
    b.subscribe("t")

    def boom(_s: str, _d: bytes) -> bool:
        raise RuntimeError("validator bug")

    b.set_validator("t", boom)
    net.wire("n0", "n1")
    await a.publish("t", b"x")
    await net.drain()
    assert b.counters["gossip_dropped_invalid"] == 1
    assert b.counters["gossip_delivered"] == 0
    await stop_all([a, b])


async def test_misuse_and_bad_addresses() -> None:
    net = mknet(seed=1)
    a = net.add_node("n0")
    with pytest.raises(NotRunning):
        await a.publish("t", b"")
    with pytest.raises(NotRunning):
        await a.connect("/memory/n0/p2p/n0")
    await a.start()
    for addr in ["/ip4/127.0.0.1/tcp/1/p2p/n1", "garbage", "/memory/n1/p2p/n2", "/memory/n0/p2p/n0", "/p2p/zz"]:
        with pytest.raises(Unreachable):
            await a.connect(addr)
    with pytest.raises(LocalError):
        net.add_node("n0")
    with pytest.raises(LocalError):
        net.add_node("bad/id")
    with pytest.raises(LocalError):
        MemNetwork(gossip_degree=0)
    with pytest.raises(LocalError):
        LinkSpec(loss=1.5)
    with pytest.raises(LocalError):
        LinkSpec(latency_ms=-1)
    with pytest.raises(LocalError):
        LinkSpec(bandwidth_bps=0)
    await a.stop()
    with pytest.raises(NotRunning):
        await a.start()
    again = net.add_node("n0")  # a stopped node's id may be reused
    await again.start()
    assert net.transport("n0") is again
    await again.stop()


async def test_connect_takes_a_round_trip_and_emits_join() -> None:
    net = mknet(seed=1, default_link=LinkSpec(latency_ms=25))
    a, b = await started(net, 2)
    ev = b.peer_events()
    t0 = net.now()
    assert await a.connect(b.listen_addrs[0]) == "n1"
    assert net.now() - t0 >= 0.05 - 1e-3
    assert await event(ev) == PeerEvent(PeerEventKind.JOIN, "n0")
    with pytest.raises(Unreachable):
        await b.connect(net.add_node("n2").listen_addrs[0])  # added but not started
    await stop_all([a, b])


async def test_stop_ends_streams_and_fails_pending() -> None:
    net = mknet(seed=1, default_link=LinkSpec(latency_ms=50))
    a, b = await started(net, 2)
    sub = a.subscribe("t")
    ev = a.peer_events()
    net.wire("n0", "n1")
    assert (await event(ev)).kind is PeerEventKind.JOIN
    pending = asyncio.ensure_future(a.request("n1", "/none", b"", timeout=WAIT))
    await a.stop()
    with pytest.raises(NotRunning):
        await pending
    assert [m async for m in sub] == []
    assert [e async for e in ev] == [PeerEvent(PeerEventKind.LEAVE, "n1")]
    await b.stop()


async def test_lazy_gossip_reaches_a_node_outside_every_mesh() -> None:
    for lazy, expect in ((None, ["n1", "n2"]), (0, ["n1"])):
        # D = D_high = 1: n0 and n1 mesh with each other, n2 finds no room in any mesh
        net = mknet(
            seed=1, gossip_degree=1, gossip_degree_high=1, gossip_lazy=lazy, default_link=LinkSpec(latency_ms=5)
        )
        nodes = await started(net, 3)
        for t in nodes:
            t.subscribe("t")
        net.full_mesh()
        assert nodes[2].mesh_peers("t") == []
        log = recorder(net)
        await nodes[0].publish("t", b"x")
        await net.drain()
        assert sorted(d.peer for d in log) == expect
        if lazy is None:
            late = next(d for d in log if d.peer == "n2")
            # IHAVE, IWANT and the message itself: three link delays after the heartbeat
            assert late.delivered_at - late.published_at >= 0.015 - 1e-9
            assert nodes[2].counters["gossip_iwant_sent"] == 1
            assert nodes[0].counters["gossip_ihave_sent"] + nodes[1].counters["gossip_ihave_sent"] >= 1
        await stop_all(nodes)


async def test_lazy_gossip_recovers_lost_copies() -> None:
    net = mknet(seed=8, default_link=LinkSpec(latency_ms=2, loss=0.3), gossip_degree=2)
    nodes = await started(net, 12)
    for t in nodes:
        t.subscribe("t")
    net.full_mesh()
    log = recorder(net)
    for i in range(20):
        await nodes[i % 12].publish("t", b"%d" % i)
    await net.drain()
    eager_only = MemNetwork(seed=8, default_link=LinkSpec(latency_ms=2, loss=0.3), gossip_degree=2, gossip_lazy=0)
    others = await started(eager_only, 12, prefix="n")
    for t in others:
        t.subscribe("t")
    eager_only.full_mesh()
    eager_log = recorder(eager_only)
    for i in range(20):
        await others[i % 12].publish("t", b"%d" % i)
    await eager_only.drain()
    assert len(log) > len(eager_log)
    assert net.counters()["gossip_iwant_sent"] > 0
    await stop_all(nodes)
    await stop_all(others)


async def test_request_dials_a_known_peer_and_dial_times_out() -> None:
    net = mknet(seed=1, default_link=LinkSpec(latency_ms=100))
    a, b, c = await started(net, 3)

    async def echo(_s: str, d: bytes) -> bytes:
        return d

    b.serve("/echo", echo)
    assert a.peers() == []
    assert await a.request("n1", "/echo", b"hi", timeout=WAIT) == b"hi"
    assert a.peers() == ["n1"]
    with pytest.raises(Unreachable):
        await a.connect(c.listen_addrs[0], timeout=0.05)  # the handshake needs 200 ms
    assert "n2" not in a.peers()
    await stop_all([a, b, c])
