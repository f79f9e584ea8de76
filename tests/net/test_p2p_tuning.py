"""Pins of the py-libp2p adjustments in ``edgenode.net._p2p_tuning``.

Each adjustment rests on a detail of the pinned py-libp2p; these tests fail loudly when an
upgrade changes that detail, and show that each adjustment does what it claims on real hosts.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from edgenode.identity import Identity
from edgenode.net import GossipMessage
from edgenode.net._p2p_tuning import IDONTWANT_THRESHOLD, install
from edgenode.net.p2p import P2PTransport
from tests.net.p2p_helpers import LOOPBACK, WAIT


@asynccontextmanager
async def mesh(n: int) -> AsyncIterator[list[P2PTransport]]:
    ts = [P2PTransport(Identity.generate(), listen=LOOPBACK) for _ in range(n)]
    try:
        for t in ts:
            await t.start()
        for i, a in enumerate(ts):
            for b in ts[i + 1 :]:
                await a.connect(b.listen_addrs[0])
        yield ts
    finally:
        for t in ts:
            await t.stop()


async def until_delivered(pub: P2PTransport, topic: str, subs: list[AsyncIterator[GossipMessage]]) -> None:
    """Publish probes until every subscriber got one (the mesh forms within a heartbeat or two)."""
    async with asyncio.timeout(WAIT):
        for s in subs:
            while True:
                await pub.publish(topic, b"probe")
                try:
                    async with asyncio.timeout(0.5):
                        await anext(s)
                    break
                except TimeoutError:
                    continue


async def until_data(sub: AsyncIterator[GossipMessage], data: bytes) -> None:
    async for msg in sub:
        if msg.data == data:
            return
    raise AssertionError("subscription ended")


def test_the_pinned_py_libp2p_is_the_one_adjusted() -> None:
    assert importlib.metadata.version("libp2p") == "0.8.1"


def test_gossipsub_publish_reaches_idontwant_before_awaiting_anything() -> None:
    # EdgeGossipSub notes the message size in publish() and reads it in
    # _emit_idontwant_for_message(): sound only while nothing is awaited in between.
    from libp2p.pubsub.gossipsub import GossipSub

    src = inspect.getsource(GossipSub.publish)
    first_await = src.index("await ")
    assert src.startswith("await self._emit_idontwant_for_message(", first_await)
    params = list(inspect.signature(GossipSub._emit_idontwant_for_message).parameters)
    assert params == ["self", "msg_id", "topic_ids"]


def test_the_adjusted_names_are_module_globals_where_they_are_used() -> None:
    import libp2p.pubsub.floodsub as floodsub_mod
    import libp2p.pubsub.gossipsub as gossipsub_mod
    import libp2p.pubsub.pubsub as pubsub_mod

    install()
    for mod in (pubsub_mod, gossipsub_mod):
        assert getattr(mod.env_to_send_in_RPC, "edgenode_tuned", False), mod.__name__
        assert "env_to_send_in_RPC(" in inspect.getsource(mod)
    for mod in (pubsub_mod, gossipsub_mod, floodsub_mod):
        assert getattr(mod.maybe_consume_signed_record, "edgenode_tuned", False), mod.__name__
        assert "maybe_consume_signed_record(" in inspect.getsource(mod)


async def test_idontwant_only_for_large_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    from libp2p.pubsub.gossipsub import GossipSub

    sent: list[int] = []
    original = GossipSub.emit_idontwant

    async def counting(self: Any, msg_ids: list[bytes], to_peer: Any) -> None:
        sent.append(len(msg_ids))
        await original(self, msg_ids, to_peer)

    monkeypatch.setattr(GossipSub, "emit_idontwant", counting)
    async with mesh(3) as (a, b, c):
        subs = [b.subscribe("t"), c.subscribe("t")]
        a.subscribe("t")
        await until_delivered(a, "t", subs)
        sent.clear()
        for i in range(5):
            await a.publish("t", bytes([i]) * 100)
        async with asyncio.timeout(WAIT):
            for s in subs:
                await until_data(s, bytes([4]) * 100)
        assert sent == []
        await a.publish("t", b"L" * IDONTWANT_THRESHOLD)
        async with asyncio.timeout(WAIT):
            for s in subs:
                await until_data(s, b"L" * IDONTWANT_THRESHOLD)
            while not sent:  # noqa: ASYNC110  # the receivers tell their mesh peers they have it
                await asyncio.sleep(0.02)
        assert sent


async def test_a_peer_record_is_verified_once_not_per_rpc(monkeypatch: pytest.MonkeyPatch) -> None:
    import libp2p.pubsub.utils as utils_mod

    checked: list[bytes] = []
    original = utils_mod.consume_envelope

    def counting(data: bytes, domain: str) -> Any:
        checked.append(bytes(data))
        return original(data, domain)

    monkeypatch.setattr(utils_mod, "consume_envelope", counting)
    async with mesh(2) as (a, b):
        sub = b.subscribe("t")
        a.subscribe("t")
        await until_delivered(a, "t", [sub])
        before = len(checked)
        for i in range(30):
            await a.publish("t", bytes([i]) * 64)
        async with asyncio.timeout(WAIT):
            await until_data(sub, bytes([29]) * 64)
        # 30 RPCs arrived with a's record; its bytes never change, so none is verified again
        assert len(checked) - before == 0
        assert len(checked) == len(set(checked))  # each record's bytes verified once


def test_yamux_stream_window_fields_are_where_open_receive_window_expects_them() -> None:
    from libp2p.stream_muxer.yamux.yamux import DEFAULT_WINDOW_SIZE, YamuxStream

    src = inspect.getsource(YamuxStream.__init__)
    for field in ("self.recv_window", "self.target_recv_window", "self.window_lock"):
        assert field in src, field
    assert DEFAULT_WINDOW_SIZE == 256 * 1024
    assert list(inspect.signature(YamuxStream.send_window_update).parameters) == ["self", "increment", "skip_lock"]


async def test_a_blob_fetch_opens_its_window_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from libp2p.stream_muxer.yamux.yamux import YamuxStream

    from edgenode.net import MemoryBlobStore

    updates: list[int] = []
    original = YamuxStream.send_window_update

    async def counting(self: Any, increment: int, skip_lock: bool = False) -> None:
        updates.append(increment)
        await original(self, increment, skip_lock)

    async with mesh(2) as (a, b):
        store = MemoryBlobStore()
        blob = bytes(range(256)) * 4096  # 1 MiB
        digest = store.put(blob)
        b.serve_blobs(store)
        monkeypatch.setattr(YamuxStream, "send_window_update", counting)
        async with asyncio.timeout(WAIT):
            assert await a.fetch_blob(b.peer_id, digest, timeout=WAIT) == blob
        # one update announcing the whole window, not a doubling per step as data arrives
        assert len(updates) == 1, updates
        assert updates[0] >= len(blob)


async def test_small_messages_and_requests_send_no_window_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    from libp2p.stream_muxer.yamux.yamux import YamuxStream

    updates: list[int] = []
    original = YamuxStream.send_window_update

    async def counting(self: Any, increment: int, skip_lock: bool = False) -> None:
        updates.append(increment)
        await original(self, increment, skip_lock)

    async def echo(_s: str, data: bytes) -> bytes:
        return data

    async with mesh(2) as (a, b):
        sub = b.subscribe("t")
        a.subscribe("t")
        b.serve("/echo/1", echo)
        await until_delivered(a, "t", [sub])
        assert await a.request(b.peer_id, "/echo/1", b"open", timeout=WAIT) == b"open"  # channel opened
        monkeypatch.setattr(YamuxStream, "send_window_update", counting)
        for i in range(50):
            await a.publish("t", bytes([i]) * 100)
            assert await a.request(b.peer_id, "/echo/1", bytes([i]) * 64, timeout=WAIT) == bytes([i]) * 64
        async with asyncio.timeout(WAIT):
            await until_data(sub, bytes([49]) * 100)
        # py-libp2p sent about three per gossip message and two per request; credit now goes
        # back once half a window (128 KiB here) has been read, which 10 KB never reaches
        assert updates == []


def test_window_credit_rests_on_the_stream_fields_it_uses() -> None:
    from libp2p.stream_muxer.yamux.yamux import YamuxStream

    install()
    assert YamuxStream._auto_tune_and_send_window_update.__name__ == "_credit_half_window"
    src = inspect.getsource(YamuxStream)
    assert "self._pending_recv_release = 0" in src
    assert src.count("await self._auto_tune_and_send_window_update(bytes_read=") >= 2


def test_dcutr_hole_punches_from_the_listen_port_after_a_dial_bounded_by_dial_timeout() -> None:
    # edgenode.net._p2p_nat gives DCUtRProtocol a short dial_timeout and relies on py-libp2p
    # for the rest of a TCP punch: its plain dial first (spec step 0) bounded by dial_timeout
    # (10 s by default, which made the punch come after the bench's window), dials bound to
    # the listen address, a listener that lets them share its port, the RTT/2 sync.
    from libp2p.relay.circuit_v2 import dcutr
    from libp2p.transport.tcp import tcp

    from edgenode.net._p2p_nat import _HOLEPUNCH_DIAL_TIMEOUT, _UNILATERAL_TIMEOUT

    assert "dial_timeout" in inspect.signature(dcutr.DCUtRProtocol.__init__).parameters
    assert 0 < _HOLEPUNCH_DIAL_TIMEOUT < 5  # inside the bench's 10 s window, with the 2 s drive loop
    assert 0 < _UNILATERAL_TIMEOUT <= _HOLEPUNCH_DIAL_TIMEOUT
    # edgenode's _DCUtR replaces step 0 (the plain dial); py-libp2p still calls it before a punch
    assert "await self._try_unilateral_upgrade(peer_id)" in inspect.getsource(
        dcutr.DCUtRProtocol._initiate_hole_punch_locked
    )
    assert "_verify_direct_connection" in inspect.getsource(dcutr.DCUtRProtocol)
    assert "trio.fail_after(self.dial_timeout)" in inspect.getsource(dcutr.DCUtRProtocol._dial_peer)
    punch = inspect.getsource(dcutr.DCUtRProtocol._perform_hole_punch)
    assert "_local_tcp_listen_addrs(self.host)" in punch and "source, as_responder" in punch
    assert "await trio.sleep(sync_delay)" in inspect.getsource(dcutr.DCUtRProtocol._initiate_hole_punch_locked)
    assert "_open_tcp_stream_from(host_str, port_int, source)" in inspect.getsource(tcp.TCP._dial_resolved)
    assert "SO_REUSEPORT" in inspect.getsource(tcp._set_reuse_flags)
    assert "_set_reuse_flags(sock)" in inspect.getsource(tcp._open_reuseport_listeners)
    assert "_set_reuse_flags(sock)" in inspect.getsource(tcp._open_tcp_stream_from)


def test_the_mux_failure_log_of_an_inbound_connection_is_the_one_moved_to_debug() -> None:
    # adjustment 6 matches py-libp2p's message text exactly; an upgrade that rewords it
    # would bring the ERROR line back on every AutoNAT probe
    from libp2p.network import swarm

    from edgenode.net._p2p_tuning import MUX_FAILURE

    src = inspect.getsource(swarm.Swarm.upgrade_inbound_raw_conn)
    assert f'logger.error("{MUX_FAILURE}", peer_id)' in src
