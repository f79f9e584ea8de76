"""net.p2p beyond the shared contract: real py-libp2p hosts in this process, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from edgenode.errors import LocalError
from edgenode.identity import Identity
from edgenode.net import (
    GossipMessage,
    MemoryBlobStore,
    NotRunning,
    PeerEvent,
    PeerEventKind,
    Transport,
    Unreachable,
)
from edgenode.net.p2p import P2PConfig, P2PTransport
from tests.net.p2p_helpers import LOOPBACK, WAIT, running


async def next_event(events: AsyncIterator[PeerEvent], kind: PeerEventKind, peer: str) -> PeerEvent:
    async with asyncio.timeout(WAIT):
        async for ev in events:
            if ev.kind is kind and ev.peer == peer:
                return ev
    raise AssertionError(f"event stream ended before {kind} {peer}")


async def _first(sub: AsyncIterator[GossipMessage], data: bytes) -> GossipMessage:
    async for msg in sub:
        if msg.data == data:
            return msg
    raise AssertionError("subscription ended")


async def gossip_until_all(
    pub: Transport, topic: str, data: bytes, subs: list[AsyncIterator[GossipMessage]]
) -> list[GossipMessage]:
    """Publish ``data`` again every 0.5 s while some subscriber lacks it (a mesh may still be forming)."""
    readers = [asyncio.ensure_future(_first(s, data)) for s in subs]
    try:
        async with asyncio.timeout(WAIT):
            while True:
                await pub.publish(topic, data)
                _done, pending = await asyncio.wait(readers, timeout=0.5)
                if not pending:
                    return [r.result() for r in readers]
    finally:
        for r in readers:
            r.cancel()


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_the_host_key_is_the_node_identity() -> None:
    ident = Identity.generate()
    a, b = P2PTransport(ident, listen=LOOPBACK), P2PTransport(Identity.generate(), listen=LOOPBACK)
    async with running(a, b):
        assert a.peer_id == ident.peer_id
        # Noise authenticates the remote key: b dialling a's address learns ident's peer id
        assert await b.connect(a.listen_addrs[0]) == ident.peer_id
        assert b.peers() == [ident.peer_id]


async def test_one_mib_blob() -> None:
    a, b = P2PTransport(Identity.generate(), listen=LOOPBACK), P2PTransport(Identity.generate(), listen=LOOPBACK)
    async with running(a, b):
        store = MemoryBlobStore()
        blob = os.urandom(1 << 20)
        digest = store.put(blob)
        b.serve_blobs(store)
        await a.connect(b.listen_addrs[0])
        assert await a.fetch_blob(b.peer_id, digest, timeout=WAIT) == blob
        assert b.counters["requests_served"] == 1


async def test_concurrent_requests_all_answered() -> None:
    a, b = P2PTransport(Identity.generate(), listen=LOOPBACK), P2PTransport(Identity.generate(), listen=LOOPBACK)
    async with running(a, b):

        async def double(_sender: str, data: bytes) -> bytes:
            await asyncio.sleep(0)
            return data * 2

        b.serve("/test/double/1", double)
        await a.connect(b.listen_addrs[0])
        payloads = [os.urandom(i + 1) for i in range(48)]
        async with asyncio.timeout(WAIT * 2):
            replies = await asyncio.gather(*(a.request(b.peer_id, "/test/double/1", p, timeout=WAIT) for p in payloads))
        assert replies == [p * 2 for p in payloads]


async def test_bootstrap_is_dialled_at_start_with_retries() -> None:
    # b starts first with a bootstrap address where nothing listens yet; a appears there later.
    port = free_tcp_port()
    ident_a = Identity.generate()
    addr_a = f"/ip4/127.0.0.1/tcp/{port}/p2p/{ident_a.peer_id}"
    b = P2PTransport(
        Identity.generate(), listen=LOOPBACK, bootstrap=[addr_a], config=P2PConfig(bootstrap_retry_interval=0.2)
    )
    a = P2PTransport(ident_a, listen=[f"/ip4/127.0.0.1/tcp/{port}"])
    async with running(b):
        events = b.peer_events()
        assert b.peers() == []
        async with running(a):
            await next_event(events, PeerEventKind.JOIN, ident_a.peer_id)
            assert b.peers() == [ident_a.peer_id]


async def test_gossip_bursts_are_neither_rate_limited_nor_dropped() -> None:
    # py-libp2p's defaults forward 10 msgs/s per peer per topic and queue only 32.
    a, b = P2PTransport(Identity.generate(), listen=LOOPBACK), P2PTransport(Identity.generate(), listen=LOOPBACK)
    async with running(a, b):
        await a.connect(b.listen_addrs[0])
        topic = "test/burst"
        sub = b.subscribe(topic)
        await gossip_until_all(a, topic, b"warm-up", [sub])
        burst = [b"burst-%d" % i for i in range(300)]
        for data in burst:
            await a.publish(topic, data)
        got: list[bytes] = []
        async with asyncio.timeout(WAIT * 3):
            async for msg in sub:
                if msg.data.startswith(b"burst-"):
                    got.append(msg.data)
                    if len(got) == len(burst):
                        break
        assert sorted(got) == sorted(burst)
        assert a.counters["gossip_published"] >= len(burst)


async def test_a_raising_validator_rejects_and_counts() -> None:
    a, b = P2PTransport(Identity.generate(), listen=LOOPBACK), P2PTransport(Identity.generate(), listen=LOOPBACK)
    async with running(a, b):
        topic = "test/raising-validator"

        def picky(_sender: str, data: bytes) -> bool:
            if data.startswith(b"crash"):
                raise ValueError("validator bug")
            return True

        b.set_validator(topic, picky)
        await a.connect(b.listen_addrs[0])
        sub = b.subscribe(topic)
        await gossip_until_all(a, topic, b"fine", [sub])
        await a.publish(topic, b"crash me")
        (after,) = await gossip_until_all(a, topic, b"fine again", [sub])
        assert after == GossipMessage(topic, a.peer_id, b"fine again")
        assert b.counters["gossip_dropped_invalid"] >= 1


async def test_dialling_a_closed_port_is_unreachable() -> None:
    a = P2PTransport(Identity.generate(), listen=LOOPBACK)
    async with running(a):
        addr = f"/ip4/127.0.0.1/tcp/{free_tcp_port()}/p2p/{Identity.generate().peer_id}"
        with pytest.raises(Unreachable):
            await a.connect(addr, timeout=5.0)
        with pytest.raises(Unreachable):
            await a.connect("/ip4/127.0.0.1/tcp/1", timeout=5.0)  # no /p2p/ part
        assert a.counters["dial_failures"] >= 1


def test_bad_listen_address_is_a_local_error() -> None:
    with pytest.raises(LocalError):
        P2PTransport(Identity.generate(), listen=["not a multiaddr"])


async def test_use_before_start_is_not_running() -> None:
    a = P2PTransport(Identity.generate(), listen=LOOPBACK)
    with pytest.raises(NotRunning):
        await a.publish("t", b"x")
    with pytest.raises(NotRunning):
        await a.request(Identity.generate().peer_id, "/x", b"")
    assert a.listen_addrs == []
    await a.stop()
    with pytest.raises(NotRunning):
        await a.start()


async def test_quic_transport() -> None:
    a = P2PTransport(Identity.generate(), quic=True)
    b = P2PTransport(Identity.generate(), quic=True)
    async with running(a, b):
        assert all("/quic-v1/" in addr for addr in a.listen_addrs)

        async def echo(_sender: str, data: bytes) -> bytes:
            return data

        a.serve("/test/echo/1", echo)
        assert await b.connect(a.listen_addrs[0]) == a.peer_id
        payload = os.urandom(200_000)
        assert await b.request(a.peer_id, "/test/echo/1", payload, timeout=WAIT) == payload


_MDNS_PEERS = """
import asyncio
from edgenode.identity import Identity
from edgenode.net import PeerEventKind
from edgenode.net.p2p import P2PTransport

async def main() -> None:
    a = P2PTransport(Identity.generate(), listen=["/ip4/127.0.0.1/tcp/0"], mdns=True)
    b = P2PTransport(Identity.generate(), listen=["/ip4/127.0.0.1/tcp/0"], mdns=True)
    await a.start()
    await b.start()
    try:
        async with asyncio.timeout(30):
            async for ev in a.peer_events():
                if ev.kind == PeerEventKind.JOIN and ev.peer == b.peer_id:
                    print("discovered", b.peer_id)
                    break
    finally:
        await b.stop()
        await a.stop()

asyncio.run(main())
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2 for a private network namespace"
)
def test_mdns_discovers_and_dials_inside_a_private_namespace() -> None:
    # mDNS multicasts, so it runs in a network namespace of its own with only a
    # multicast-enabled loopback: nothing leaves this machine.
    ns = f"edgenode-mdns-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    try:
        for cmd in (["link", "set", "lo", "up"], ["link", "set", "lo", "multicast", "on"],
                    ["route", "add", "224.0.0.0/4", "dev", "lo"]):
            subprocess.run(["ip", "-n", ns, *cmd], check=True, timeout=30)
        proc = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", _MDNS_PEERS],
                              capture_output=True, text=True, timeout=90)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "discovered 12D3KooW" in proc.stdout


def test_quic_flag_and_addresses_must_agree() -> None:
    with pytest.raises(LocalError):
        P2PTransport(Identity.generate(), listen=LOOPBACK, quic=True)
    with pytest.raises(LocalError):
        P2PTransport(Identity.generate(), listen=["/ip4/127.0.0.1/udp/0/quic-v1"])


async def test_streams_end_after_stop() -> None:
    a = P2PTransport(Identity.generate(), listen=LOOPBACK)
    async with running(a):
        events = a.peer_events()
        sub = a.subscribe("test/ending")
    async with asyncio.timeout(WAIT):
        assert [ev async for ev in events] == []
        assert [m async for m in sub] == []
        assert [ev async for ev in a.peer_events()] == []


async def test_an_address_in_use_fails_start_with_a_local_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        t = P2PTransport(Identity.generate(), listen=[f"/ip4/127.0.0.1/tcp/{port}"])
        with pytest.raises(LocalError, match="cannot listen"):
            await t.start()
        await t.stop()


async def test_disconnect_closes_the_connection_on_both_sides() -> None:
    a, b = P2PTransport(Identity.generate(), listen=LOOPBACK), P2PTransport(Identity.generate(), listen=LOOPBACK)
    async with running(a, b):
        ev_a, ev_b = a.peer_events(), b.peer_events()
        await a.connect(b.listen_addrs[0])
        await next_event(ev_b, PeerEventKind.JOIN, a.peer_id)
        await a.disconnect(b.peer_id)
        await next_event(ev_a, PeerEventKind.LEAVE, b.peer_id)
        await next_event(ev_b, PeerEventKind.LEAVE, a.peer_id)
        assert a.peers() == [] and b.peers() == []
        await a.disconnect(b.peer_id)  # not connected: nothing happens
        assert await a.connect(b.listen_addrs[0]) == b.peer_id  # and it can come back
