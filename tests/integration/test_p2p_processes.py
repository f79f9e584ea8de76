"""Five real libp2p nodes as separate OS processes on 127.0.0.1.

They exchange gossip, requests and a 1 MiB blob; one is killed with SIGKILL,
the rest notice (LEAVE) and go on.  Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _p2p_peer import PeerProcess

from edgenode.identity import Identity
from edgenode.net import sha256_hex

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

N = 5
WAIT = 60.0


async def wait_for_event(peer: PeerProcess, pred: Any, timeout: float = WAIT) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            ev = await peer.events.get()
            if pred(ev):
                return ev


async def gossip_until_all(pub: PeerProcess, data: bytes, receivers: list[PeerProcess]) -> None:
    """Publish ``data`` (again every second while someone lacks it) until every receiver got it."""

    def is_it(ev: dict[str, Any]) -> bool:
        return ev.get("event") == "gossip" and ev["data"] == data.hex() and ev["sender"] == pub.peer_id

    waiters = [asyncio.ensure_future(wait_for_event(r, is_it)) for r in receivers]
    try:
        async with asyncio.timeout(WAIT):
            while True:
                reply = await pub.call("publish", data=data.hex())
                assert reply["ok"], reply
                _done, pending = await asyncio.wait(waiters, timeout=1.0)
                if not pending:
                    for w in waiters:
                        w.result()
                    return
    finally:
        for w in waiters:
            w.cancel()


@pytest.fixture
async def swarm() -> AsyncIterator[list[PeerProcess]]:
    rng = random.Random(4)
    peers = await asyncio.gather(*(PeerProcess.spawn(rng.randbytes(32)) for _ in range(N)))
    try:
        yield list(peers)
    finally:
        results = await asyncio.gather(*(p.stop() for p in peers))
        for p, (code, err) in zip(peers, results, strict=True):
            if p.proc.returncode == -signal.SIGKILL:
                continue
            assert code == 0, err[-3000:]
            assert "Traceback" not in err, err[-3000:]


async def test_five_processes_gossip_request_blob_and_survive_a_sigkill(swarm: list[PeerProcess]) -> None:
    peers = swarm
    ids = [p.peer_id for p in peers]
    assert len(set(ids)) == N
    # a ring plus chords: every node has >= 2 links, no node knows everyone directly
    links = [(i, (i + 1) % N) for i in range(N)] + [(0, 2)]
    for a, b in links:
        reply = await peers[a].call("connect", addr=peers[b].addr)
        assert reply == {"id": reply["id"], "ok": True, "peer": ids[b]}
    for a, b in links:
        await wait_for_event(peers[b], lambda ev, a=a: ev.get("event") == "join" and ev["peer"] == ids[a])

    # gossip from one node reaches every other process, with the origin as sender (multi-hop for some)
    await gossip_until_all(peers[1], b"hello from 1", [p for i, p in enumerate(peers) if i != 1])

    # requests over direct streams; with no link (1 -> 3) the peer is found by peer routing (the DHT
    # learnt its address from the others); a peer nobody knows is Unreachable
    payload = os.urandom(5000)
    for a, b in [(2, 3), (4, 0), (1, 3)]:
        reply = await peers[a].call("request", peer=ids[b], data=payload.hex())
        assert reply["ok"] and bytes.fromhex(reply["data"]) == payload, reply
    stranger = Identity.generate().peer_id
    reply = await peers[1].call("request", peer=stranger, data="00")
    assert not reply["ok"] and reply["error"].startswith("Unreachable"), reply

    # a 1 MiB blob, verified against its sha256 by the fetcher
    blob_digest = peers[1].info[0]["blob"]
    reply = await peers[0].call("fetch", peer=ids[1], digest=blob_digest)
    assert reply["ok"], reply
    assert reply["bytes"] == 1 << 20 and reply["sha256"] == blob_digest

    # SIGKILL node 3: its neighbours see it leave, and the rest carry on
    victim = peers[3]
    victim.proc.send_signal(signal.SIGKILL)
    await victim.proc.wait()
    neighbours = sorted({b for a, b in links if a == 3} | {a for a, b in links if b == 3})
    for i in neighbours:
        await wait_for_event(peers[i], lambda ev: ev.get("event") == "leave" and ev["peer"] == ids[3])
    survivors = [p for i, p in enumerate(peers) if i != 3]
    await gossip_until_all(peers[0], b"after the crash", [p for p in survivors if p is not peers[0]])
    for a, b in [(4, 0), (2, 1)]:
        reply = await peers[a].call("request", peer=ids[b], data=payload.hex())
        assert reply["ok"] and bytes.fromhex(reply["data"]) == payload, reply
    reply = await peers[2].call("request", peer=ids[3], data="00")
    assert not reply["ok"], reply
    assert sha256_hex(payload) != blob_digest
