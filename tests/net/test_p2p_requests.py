"""Requests over real py-libp2p: the persistent channel, its fallback, bulk streams and bounds."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from edgenode.identity import Identity
from edgenode.net import BLOB_PROTOCOL, MemoryBlobStore, NetError, RemoteFailure
from edgenode.net.p2p import P2PConfig, P2PTransport
from tests.net.p2p_helpers import LOOPBACK, WAIT, running

ECHO = "/test/echo/1"


async def echo(_sender: str, data: bytes) -> bytes:
    return data


async def test_requests_share_one_persistent_channel() -> None:
    a, b = P2PTransport(Identity.generate(), listen=LOOPBACK), P2PTransport(Identity.generate(), listen=LOOPBACK)
    async with running(a, b):
        b.serve(ECHO, echo)
        await a.connect(b.listen_addrs[0])
        for i in range(30):
            assert await a.request(b.peer_id, ECHO, bytes([i]) * 64, timeout=WAIT) == bytes([i]) * 64
        async with asyncio.timeout(WAIT):
            many = await asyncio.gather(*(a.request(b.peer_id, ECHO, os.urandom(32), timeout=WAIT) for _ in range(40)))
        assert len(many) == 40
        assert a.counters["channels_opened"] == 1
        assert b.counters["requests_served"] == 70


async def test_a_peer_without_the_channel_is_served_a_stream_per_request() -> None:
    old = P2PTransport(Identity.generate(), listen=LOOPBACK, config=P2PConfig(channels=False))
    new = P2PTransport(Identity.generate(), listen=LOOPBACK)
    async with running(old, new):
        old.serve(ECHO, echo)
        new.serve(ECHO, echo)
        await new.connect(old.listen_addrs[0])
        for i in range(3):
            assert await new.request(old.peer_id, ECHO, bytes([i]), timeout=WAIT) == bytes([i])
            assert await old.request(new.peer_id, ECHO, bytes([i]), timeout=WAIT) == bytes([i])
        assert new.counters.get("channels_opened", 0) == 0
        assert new.counters["channel_fallbacks"] == 1  # asked once, then remembered
        assert old.counters.get("channels_opened", 0) == 0


async def test_a_channel_survives_the_peer_restarting() -> None:
    ident_b = Identity.generate()
    a = P2PTransport(Identity.generate(), listen=LOOPBACK)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    listen_b = [f"/ip4/127.0.0.1/tcp/{port}"]  # a restarted node comes back on its configured port
    async with running(a):
        b1 = P2PTransport(ident_b, listen=listen_b)
        async with running(b1):
            b1.serve(ECHO, echo)
            await a.connect(b1.listen_addrs[0])
            assert await a.request(ident_b.peer_id, ECHO, b"before", timeout=WAIT) == b"before"
        b2 = P2PTransport(ident_b, listen=listen_b)
        async with running(b2):
            b2.serve(ECHO, echo)
            async with asyncio.timeout(WAIT):
                while True:  # the old channel may still look open until its connection's end is seen
                    try:
                        reply = await a.request(ident_b.peer_id, ECHO, b"after", timeout=WAIT)
                        break
                    except RemoteFailure:
                        await asyncio.sleep(0.05)
            assert reply == b"after"
        assert a.counters["channels_opened"] == 2


async def test_blobs_travel_on_their_own_stream() -> None:
    a, b = P2PTransport(Identity.generate(), listen=LOOPBACK), P2PTransport(Identity.generate(), listen=LOOPBACK)
    async with running(a, b):
        store = MemoryBlobStore()
        digest = store.put(os.urandom(1 << 20))
        b.serve_blobs(store)
        gate = asyncio.Event()

        async def held(_sender: str, data: bytes) -> bytes:
            await gate.wait()
            return data

        b.serve("/test/held/1", held)
        await a.connect(b.listen_addrs[0])
        blob = asyncio.ensure_future(a.fetch_blob(b.peer_id, digest, timeout=WAIT))
        small = asyncio.ensure_future(a.request(b.peer_id, "/test/held/1", b"x", timeout=WAIT))
        gate.set()
        async with asyncio.timeout(WAIT):
            assert await small == b"x"
            assert len(await blob) == 1 << 20
        assert a.counters["channels_opened"] == 1  # the small request's; the blob opened none
        assert BLOB_PROTOCOL in P2PConfig().bulk_protocols


async def test_inbound_streams_per_peer_are_bounded() -> None:
    server = P2PTransport(
        Identity.generate(), listen=LOOPBACK, config=P2PConfig(channels=False, max_inbound_streams_per_peer=2)
    )
    client = P2PTransport(Identity.generate(), listen=LOOPBACK, config=P2PConfig(channels=False))
    async with running(server, client):
        gate = asyncio.Event()
        entered = 0

        async def slow(_sender: str, data: bytes) -> bytes:
            nonlocal entered
            entered += 1
            await gate.wait()
            return data

        server.serve("/test/slow/1", slow)
        await client.connect(server.listen_addrs[0])
        calls = [asyncio.ensure_future(client.request(server.peer_id, "/test/slow/1", b"x", timeout=WAIT))
                 for _ in range(6)]
        async with asyncio.timeout(WAIT):
            while server.counters.get("requests_refused_streams", 0) < 4:  # noqa: ASYNC110  # a counter: no event
                await asyncio.sleep(0.02)
        gate.set()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert sum(r == b"x" for r in results) == 2
        assert all(isinstance(r, NetError) for r in results if r != b"x")
        assert entered == 2


@pytest.mark.parametrize("channels", [True, False])
async def test_a_failing_handler_sends_a_code_not_its_text(channels: bool) -> None:
    cfg = P2PConfig(channels=channels)
    a, b = P2PTransport(Identity.generate(), listen=LOOPBACK, config=cfg), P2PTransport(
        Identity.generate(), listen=LOOPBACK, config=cfg
    )
    async with running(a, b):

        async def leaky(_sender: str, _data: bytes) -> bytes:
            raise RuntimeError("/home/node/node.key is 0600")

        b.serve("/test/leaky/1", leaky)
        await a.connect(b.listen_addrs[0])
        with pytest.raises(RemoteFailure) as info:
            await a.request(b.peer_id, "/test/leaky/1", b"", timeout=WAIT)
        assert "handler_failed" in str(info.value)
        assert "node.key" not in str(info.value)


@pytest.mark.parametrize("channels", [True, False])
async def test_requests_over_their_protocols_limit_never_reach_the_handler(channels: bool) -> None:
    cfg = P2PConfig(channels=channels, request_limits=(("/test/small/1", 1024),), default_request_bytes=8192)
    a = P2PTransport(Identity.generate(), listen=LOOPBACK, config=cfg)
    b = P2PTransport(Identity.generate(), listen=LOOPBACK, config=cfg)
    async with running(a, b):
        seen: list[int] = []

        async def record(_sender: str, data: bytes) -> bytes:
            seen.append(len(data))
            return b"ok"

        b.serve("/test/small/1", record)
        b.serve("/test/other/1", record)
        await a.connect(b.listen_addrs[0])
        assert await a.request(b.peer_id, "/test/small/1", bytes(1024), timeout=WAIT) == b"ok"
        with pytest.raises(RemoteFailure, match="bad_request"):
            await a.request(b.peer_id, "/test/small/1", bytes(1025), timeout=WAIT)
        assert await a.request(b.peer_id, "/test/other/1", bytes(8192), timeout=WAIT) == b"ok"
        with pytest.raises(RemoteFailure, match="bad_request"):
            await a.request(b.peer_id, "/test/other/1", bytes(8193), timeout=WAIT)
        # a frame past every limit is not read at all: the stream (or channel) is reset
        with pytest.raises(NetError):
            await a.request(b.peer_id, "/test/other/1", bytes(200_000), timeout=WAIT)
        assert seen == [1024, 8192]
        assert b.counters["requests_too_large"] == 2
        assert await a.request(b.peer_id, "/test/small/1", b"again", timeout=WAIT) == b"ok"
