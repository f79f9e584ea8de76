"""The transport contract: every implementation in ``conftest.FACTORIES`` must pass it.

Waits are bounded (``asyncio.timeout``); gossip that may need a mesh to form is
re-published at an interval until it arrives (``gossip_until_all``), never by
sleeping a fixed time.  Counter names checked here are part of the contract:
``gossip_dropped_invalid``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest

from edgenode.identity import Identity, public_key_from_peer_id
from edgenode.net import (
    BLOB_PROTOCOL,
    COUNTERS,
    BlobMismatch,
    GossipMessage,
    MemoryBlobStore,
    NotRunning,
    PeerEvent,
    PeerEventKind,
    RemoteFailure,
    RequestTimeout,
    Transport,
    Unreachable,
)

SwarmFactory = Callable[[int, bool], AbstractAsyncContextManager[list[Transport]]]
"""The ``make_swarm`` fixture (see conftest.py): ``make_swarm(n, connected)``."""

WAIT = 20.0
"""Upper bound of any single wait in this suite (seconds)."""


async def next_event(events: AsyncIterator[PeerEvent], kind: PeerEventKind, peer: str) -> PeerEvent:
    async with asyncio.timeout(WAIT):
        async for ev in events:
            if ev.kind is kind and ev.peer == peer:
                return ev
    raise AssertionError(f"event stream ended before {kind} {peer}")


async def read_until(sub: AsyncIterator[GossipMessage], data: bytes) -> list[GossipMessage]:
    """Everything ``sub`` yields up to and including the first message carrying ``data``."""
    log: list[GossipMessage] = []
    async for msg in sub:
        log.append(msg)
        if msg.data == data:
            return log
    raise AssertionError("subscription ended")


async def gossip_until_all(
    pub: Transport, topic: str, data: bytes, subs: list[AsyncIterator[GossipMessage]], interval: float = 0.5
) -> list[list[GossipMessage]]:
    """Publish ``data`` (again every ``interval`` s while some subscriber lacks it) until each sub has it.

    Returns, per subscriber, what it read meanwhile; the last item is the message with ``data``.
    """
    readers = [asyncio.ensure_future(read_until(s, data)) for s in subs]
    try:
        async with asyncio.timeout(WAIT):
            while True:
                await pub.publish(topic, data)
                _done, pending = await asyncio.wait(readers, timeout=interval)
                if not pending:
                    return [r.result() for r in readers]
    finally:
        for r in readers:
            r.cancel()


async def test_identity_and_addresses(make_swarm: SwarmFactory) -> None:
    async with make_swarm(2, False) as nodes:
        a, b = nodes
        assert a.peer_id != b.peer_id
        for t in nodes:
            assert len(public_key_from_peer_id(t.peer_id)) == 32
            assert t.listen_addrs
            for addr in t.listen_addrs:
                assert addr.endswith(f"/p2p/{t.peer_id}")
            assert t.peers() == []


async def test_connect_peers_and_events(make_swarm: SwarmFactory) -> None:
    async with make_swarm(3, False) as nodes:
        a, b, c = nodes
        ev_a, ev_b = a.peer_events(), b.peer_events()
        assert await a.connect(b.listen_addrs[0]) == b.peer_id
        await next_event(ev_a, PeerEventKind.JOIN, b.peer_id)
        await next_event(ev_b, PeerEventKind.JOIN, a.peer_id)
        assert a.peers() == [b.peer_id]
        assert b.peers() == [a.peer_id]
        # dialling again is harmless
        assert await a.connect(b.listen_addrs[0]) == b.peer_id
        assert a.peers() == [b.peer_id]
        assert await c.connect(b.listen_addrs[0]) == b.peer_id
        await next_event(ev_b, PeerEventKind.JOIN, c.peer_id)
        assert sorted(b.peers()) == sorted([a.peer_id, c.peer_id])
        await c.stop()
        await next_event(ev_b, PeerEventKind.LEAVE, c.peer_id)
        assert b.peers() == [a.peer_id]


async def test_connect_to_nowhere_is_unreachable(make_swarm: SwarmFactory) -> None:
    async with make_swarm(2, False) as nodes:
        a, b = nodes
        ghost = Identity.generate().peer_id
        addr = b.listen_addrs[0].replace(b.peer_id, ghost)
        with pytest.raises(Unreachable):
            await a.connect(addr, timeout=5.0)


async def test_gossip_reaches_all_but_the_publisher(make_swarm: SwarmFactory) -> None:
    async with make_swarm(4, True) as nodes:
        pub, *others = nodes
        topic = "contract/gossip"
        own = pub.subscribe(topic)
        subs = [t.subscribe(topic) for t in others]
        logs = await gossip_until_all(pub, topic, b"hello mesh", subs)
        for log in logs:
            assert log[-1] == GossipMessage(topic, pub.peer_id, b"hello mesh")
        # the publisher's own subscription never saw its own message, only the next one from another node
        (own_log,) = await gossip_until_all(others[0], topic, b"from another", [own])
        assert own_log
        assert {m.sender for m in own_log} == {others[0].peer_id}


async def test_gossip_sender_is_the_origin_across_hops(make_swarm: SwarmFactory) -> None:
    async with make_swarm(3, False) as nodes:
        a, b, c = nodes  # a line: a - b - c
        await a.connect(b.listen_addrs[0])
        await b.connect(c.listen_addrs[0])
        topic = "contract/line"
        sub_b, sub_c = b.subscribe(topic), c.subscribe(topic)
        logs = await gossip_until_all(a, topic, b"two hops", [sub_b, sub_c])
        assert [log[-1].sender for log in logs] == [a.peer_id, a.peer_id]


async def test_topics_are_separate(make_swarm: SwarmFactory) -> None:
    async with make_swarm(2, True) as nodes:
        a, b = nodes
        sub_x, sub_y = b.subscribe("contract/x"), b.subscribe("contract/y")
        (x_log,) = await gossip_until_all(a, "contract/x", b"on x", [sub_x])
        (y_log,) = await gossip_until_all(a, "contract/y", b"on y", [sub_y])
        # each subscription saw only its own topic, although x was published first
        assert {m.topic for m in x_log} == {"contract/x"}
        assert {m.topic for m in y_log} == {"contract/y"}


async def test_validator_drops_and_counts(make_swarm: SwarmFactory) -> None:
    async with make_swarm(3, True) as nodes:
        a, b, c = nodes
        topic = "contract/validated"
        seen_senders: list[str] = []

        def only_good(sender: str, data: bytes) -> bool:
            seen_senders.append(sender)
            return not data.startswith(b"bad")

        b.set_validator(topic, only_good)
        sub_b, sub_c = b.subscribe(topic), c.subscribe(topic)
        await gossip_until_all(a, topic, b"warm-up", [sub_b, sub_c])
        before = b.counters.get("gossip_dropped_invalid", 0)
        await a.publish(topic, b"bad message")
        (b_log,) = await gossip_until_all(a, topic, b"good message", [sub_b])
        assert [m.data for m in b_log] == [b"good message"] * len(b_log)
        assert b.counters["gossip_dropped_invalid"] > before
        assert a.peer_id in seen_senders


async def test_subscription_aclose_ends_iteration(make_swarm: SwarmFactory) -> None:
    async with make_swarm(2, True) as nodes:
        a, b = nodes
        sub = b.subscribe("contract/closing")
        await gossip_until_all(a, "contract/closing", b"one", [sub])
        await sub.aclose()
        with pytest.raises(StopAsyncIteration):
            async with asyncio.timeout(WAIT):
                await anext(sub)


async def test_aclose_ends_an_iteration_waiting_for_a_message(make_swarm: SwarmFactory) -> None:
    async with make_swarm(2, True) as nodes:
        a, b = nodes
        topic = "contract/closing-while-waiting"
        sub = b.subscribe(topic)
        await gossip_until_all(a, topic, b"one", [sub])

        async def consume() -> None:
            async for _msg in sub:
                pass

        reader = asyncio.create_task(consume())
        for _ in range(3):
            await asyncio.sleep(0)  # let the reader reach its wait for the next message
        await sub.aclose()
        async with asyncio.timeout(WAIT):
            await reader


# -- threads: handlers and streams on the caller's loop, validators anywhere (thread-safe) --


async def test_request_handler_runs_on_the_callers_loop(make_swarm: SwarmFactory) -> None:
    async with make_swarm(2, True) as nodes:
        a, b = nodes
        where: list[tuple[int, asyncio.AbstractEventLoop]] = []

        async def record(_sender: str, data: bytes) -> bytes:
            where.append((threading.get_ident(), asyncio.get_running_loop()))
            return data

        b.serve("/contract/where/1", record)
        assert await a.request(b.peer_id, "/contract/where/1", b"x", timeout=WAIT) == b"x"
        assert where == [(threading.get_ident(), asyncio.get_running_loop())]


async def test_validator_is_called_and_what_it_rejects_is_not_delivered(make_swarm: SwarmFactory) -> None:
    async with make_swarm(2, True) as nodes:
        a, b = nodes
        topic = "contract/validator-thread"
        lock = threading.Lock()  # the validator may run on another thread: it guards what it shares
        threads: set[int] = set()

        def check(_sender: str, data: bytes) -> bool:
            with lock:
                threads.add(threading.get_ident())
            return not data.startswith(b"rejected")

        b.set_validator(topic, check)
        sub = b.subscribe(topic)
        await gossip_until_all(a, topic, b"warm-up", [sub])
        await a.publish(topic, b"rejected 1")
        (log1,) = await gossip_until_all(a, topic, b"accepted 1", [sub])
        await a.publish(topic, b"rejected 2")
        (log2,) = await gossip_until_all(a, topic, b"accepted 2", [sub])
        assert not [m.data for m in log1 + log2 if m.data.startswith(b"rejected")]
        with lock:
            assert threads


async def test_request_response(make_swarm: SwarmFactory) -> None:
    async with make_swarm(2, True) as nodes:
        a, b = nodes
        senders: list[str] = []

        async def echo(sender: str, data: bytes) -> bytes:
            senders.append(sender)
            return b"echo:" + data

        b.serve("/contract/echo/1", echo)
        payload = os.urandom(3000)
        assert await a.request(b.peer_id, "/contract/echo/1", payload, timeout=WAIT) == b"echo:" + payload
        assert await a.request(b.peer_id, "/contract/echo/1", b"", timeout=WAIT) == b"echo:"
        assert senders == [a.peer_id, a.peer_id]


async def test_handler_failure_and_unknown_protocol_are_remote_failures(make_swarm: SwarmFactory) -> None:
    async with make_swarm(2, True) as nodes:
        a, b = nodes

        async def broken(_sender: str, _data: bytes) -> bytes:
            raise ValueError("handler exploded")

        async def fine(_sender: str, data: bytes) -> bytes:
            return data

        b.serve("/contract/broken/1", broken)
        b.serve("/contract/fine/1", fine)
        with pytest.raises(RemoteFailure):
            await a.request(b.peer_id, "/contract/broken/1", b"x", timeout=WAIT)
        with pytest.raises(RemoteFailure):
            await a.request(b.peer_id, "/contract/nobody-serves-this/1", b"x", timeout=WAIT)
        # both ends still work
        assert await a.request(b.peer_id, "/contract/fine/1", b"still alive", timeout=WAIT) == b"still alive"
        # the same counters, named the same, on every transport
        sent, served = a.counters, b.counters
        assert (sent["requests_sent"], sent["requests_errors"], sent["requests_timed_out"]) == (3, 2, 0)
        assert (served["requests_failed"], served["requests_unhandled"]) == (1, 1)
        assert served["requests_served"] >= 2  # the broken and the fine one (libp2p's ping may add)


async def test_every_transport_reports_the_common_counters_from_zero(make_swarm: SwarmFactory) -> None:
    async with make_swarm(1, False) as nodes:
        counters = nodes[0].counters
        assert set(COUNTERS) <= set(counters)
        assert all(counters[k] == 0 for k in COUNTERS if k.startswith(("gossip_", "requests_")))


async def test_request_timeout(make_swarm: SwarmFactory) -> None:
    async with make_swarm(2, True) as nodes:
        a, b = nodes
        never = asyncio.Event()

        async def stuck(_sender: str, _data: bytes) -> bytes:
            await never.wait()
            return b"too late"

        b.serve("/contract/stuck/1", stuck)
        with pytest.raises(RequestTimeout):
            await a.request(b.peer_id, "/contract/stuck/1", b"x", timeout=0.3)
        assert (a.counters["requests_timed_out"], a.counters["requests_errors"]) == (1, 0)


async def test_request_to_unknown_peer_is_unreachable(make_swarm: SwarmFactory) -> None:
    async with make_swarm(1, False) as nodes:
        (a,) = nodes
        with pytest.raises(Unreachable):
            await a.request(Identity.generate().peer_id, "/contract/echo/1", b"x", timeout=5.0)


async def test_blobs_are_served_and_verified(make_swarm: SwarmFactory) -> None:
    async with make_swarm(3, True) as nodes:
        a, b, liar = nodes
        store = MemoryBlobStore()
        blob = os.urandom(256 * 1024)
        digest = store.put(blob)
        b.serve_blobs(store)
        assert await a.fetch_blob(b.peer_id, digest, timeout=WAIT) == blob
        with pytest.raises(RemoteFailure):
            await a.fetch_blob(b.peer_id, "00" * 32, timeout=WAIT)

        async def lie(_sender: str, _req: bytes) -> bytes:
            return b"definitely not the blob you asked for"

        liar.serve(BLOB_PROTOCOL, lie)
        with pytest.raises(BlobMismatch):
            await a.fetch_blob(liar.peer_id, digest, timeout=WAIT)


async def test_stop_is_clean(make_swarm: SwarmFactory) -> None:
    before = asyncio.all_tasks()
    async with make_swarm(2, True) as nodes:
        a, b = nodes
        never = asyncio.Event()

        async def stuck(_sender: str, _data: bytes) -> bytes:
            await never.wait()
            return b""

        b.serve("/contract/stuck/1", stuck)
        sub = b.subscribe("contract/stop")
        await gossip_until_all(a, "contract/stop", b"before stop", [sub])
        with pytest.raises(RequestTimeout):
            await a.request(b.peer_id, "/contract/stuck/1", b"x", timeout=0.2)
        await b.stop()
        await b.stop()  # idempotent
        with pytest.raises(NotRunning):
            await b.publish("contract/stop", b"after stop")
        await a.stop()
        assert a.peers() == []
    leftover = {t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()}
    assert leftover == set()
