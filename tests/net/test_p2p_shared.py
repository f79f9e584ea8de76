"""Hosts of one asyncio loop share one trio thread, and leave it one by one."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from edgenode.errors import LocalError
from edgenode.identity import Identity
from edgenode.net.p2p import P2PTransport
from tests.net.p2p_helpers import LOOPBACK, WAIT


def network_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("edgenode-p2p")]


async def test_hosts_of_one_loop_share_one_network_thread() -> None:
    assert network_threads() == []
    ts = [P2PTransport(Identity.generate(), listen=LOOPBACK) for _ in range(4)]
    for t in ts:
        await t.start()
    assert len(network_threads()) == 1
    async with asyncio.timeout(WAIT):
        for t in ts[1:]:
            await ts[0].connect(t.listen_addrs[0])

    async def echo(_s: str, data: bytes) -> bytes:
        return data

    ts[3].serve("/echo/1", echo)
    await ts[0].stop()  # one leaves; the others go on in the same thread
    assert len(network_threads()) == 1
    async with asyncio.timeout(WAIT):
        await ts[1].connect(ts[3].listen_addrs[0])
        assert await ts[1].request(ts[3].peer_id, "/echo/1", b"still here", timeout=WAIT) == b"still here"
    for t in ts[1:]:
        await t.stop()
    async with asyncio.timeout(WAIT):
        while network_threads():  # noqa: ASYNC110  # the last one out joins the thread
            await asyncio.sleep(0.01)


async def test_a_host_that_fails_to_start_leaves_the_others_running() -> None:
    good = P2PTransport(Identity.generate(), listen=LOOPBACK)
    await good.start()
    try:
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            clash = P2PTransport(Identity.generate(), listen=[f"/ip4/127.0.0.1/tcp/{busy.getsockname()[1]}"])
            with pytest.raises(LocalError, match="cannot listen"):
                await clash.start()
            await clash.stop()
        other = P2PTransport(Identity.generate(), listen=LOOPBACK)
        await other.start()
        async with asyncio.timeout(WAIT):
            assert await other.connect(good.listen_addrs[0]) == good.peer_id
        await other.stop()
    finally:
        await good.stop()
