"""The trio-side libp2p node: malformed request streams are dropped and counted,
and neither the server's requests nor its pubsub on that connection suffer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import multiaddr
import pytest

from edgenode.identity import Identity
from edgenode.net import RemoteFailure, RequestTimeout
from edgenode.net._p2p_bridge import TrioThread
from edgenode.net._p2p_frame import encode_frame, encode_request
from edgenode.net._p2p_host import Counters, LibP2PNode, NodeHooks, NodeSettings
from edgenode.net._p2p_util import dialable
from edgenode.net.p2p import P2PTransport

WAIT = 20.0


async def _no_dispatch(_sender: str, _protocol: str, _data: bytes) -> bytes:
    raise AssertionError("the raw node serves nothing")


@asynccontextmanager
async def raw_node() -> AsyncIterator[tuple[TrioThread, LibP2PNode, Counters]]:
    """A bare LibP2PNode in its own trio thread, driven directly (no P2PTransport around it)."""
    counters = Counters()
    hooks = NodeHooks(on_gossip=lambda *_: None, on_peers=lambda *_: None, dispatch=_no_dispatch)
    node = LibP2PNode(NodeSettings(seed=Identity.generate().seed, listen=("/ip4/127.0.0.1/tcp/0",)), hooks, counters)
    bridge = TrioThread("test-raw-node")
    await bridge.start(node.run, WAIT)
    try:
        yield bridge, node, counters
    finally:
        await bridge.call(node.close, 5.0)
        await bridge.stop(WAIT)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff\xff\xff\xff",  # announces a frame far over the limit
        encode_frame(b"\x00", 1 << 20),  # a whole frame whose request body is malformed
        encode_frame(encode_request("/x", b"y"), 1 << 20)[:-1],  # a frame cut short, then reset on the timeout
    ],
)
async def test_malformed_request_streams_are_dropped_and_counted(garbage: bytes) -> None:
    server = P2PTransport(Identity.generate(), listen=["/ip4/127.0.0.1/tcp/0"])

    async def echo(_sender: str, data: bytes) -> bytes:
        return data

    server.serve("/test/echo/1", echo)
    await server.start()
    try:
        async with raw_node() as (bridge, node, _counters):
            assert await bridge.call(node.connect, server.listen_addrs[0], WAIT) == server.peer_id
            sub = server.subscribe("test/after-garbage")
            with pytest.raises((RemoteFailure, RequestTimeout)):
                await bridge.call(node.exchange, server.peer_id, garbage, 1.0)
            # requests on the same connection still work
            assert await bridge.call(node.request, server.peer_id, "/test/echo/1", b"ok?", WAIT) == b"ok?"
            # and so does pubsub on it
            async with asyncio.timeout(WAIT):
                got = None
                while got is None:
                    await bridge.call(node.publish, "test/after-garbage", b"still gossiping")
                    try:
                        async with asyncio.timeout(0.5):
                            got = await anext(sub)
                    except TimeoutError:
                        continue
            assert (got.sender, got.data) == (node.peer_id, b"still gossiping")
            # checked last: the server learns of a reset stream asynchronously (yamux frames arrive in order)
            assert server.counters["requests_bad"] == 1
    finally:
        await server.stop()


def test_wildcard_listen_addresses_are_advertised_as_dialable_ones() -> None:
    out = dialable([multiaddr.Multiaddr("/ip4/0.0.0.0/udp/4001/quic-v1"), multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/5")])
    assert not any("0.0.0.0" in a for a in out)
    assert out[-2:] == ["/ip4/127.0.0.1/udp/4001/quic-v1", "/ip4/127.0.0.1/tcp/5"]
    assert all(a.endswith("/udp/4001/quic-v1") for a in out[:-1])
