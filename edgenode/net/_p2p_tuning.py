"""Small, documented adjustments of the pinned py-libp2p (0.8.1) where it offers no setting.

Every adjustment here keeps the bytes on the wire standard (an unpatched peer, or
another libp2p implementation, sees nothing unusual); each is pinned by a test in
``tests/net/test_p2p_tuning.py`` that fails loudly when an upgrade changes the code
it adjusts.  Measured effect: docs/net.md.

1. **Signed peer records, made once and checked once.**  py-libp2p attaches its signed
   peer record to every pubsub RPC (rebuilding the address set with ``host.get_addrs()``
   each time) and verifies the record of every RPC it receives, twice (once in
   ``Pubsub`` and again in ``GossipSub.handle_rpc``).  We still send the record, but from
   a cache; and a record whose exact bytes were already verified for that same sender
   is not verified again.
4. **Window updates when half the window is consumed.**  py-libp2p's yamux credits the
   window back on nearly every read (three WINDOW_UPDATE frames per small gossip message,
   two per request on a channel, each a Noise-encrypted frame both ends must process).
   Like go-yamux, a stream now credits back the bytes its reader consumed once they reach
   half of its window, in one update (:func:`_credit_half_window`); a stream's window no
   longer auto-grows (bulk streams and channels open theirs at once instead, see 3).
3. **A bulk stream opens its receive window at once.**  A yamux stream starts with the
   spec's 256 KiB window and py-libp2p grows it by doubling, one WINDOW_UPDATE per step
   as data arrives; a stream that will receive a blob (up to ``max_frame_bytes``) instead
   announces the window it needs in one update right after it opens, as go-yamux does
   with a configured stream window (:func:`open_receive_window`).
2. **IDONTWANT only for large messages.**  py-libp2p sends IDONTWANT to every mesh peer
   for every message; go-libp2p only above 1 KiB (``IDontWantMessageThreshold``),
   where saving a duplicate is worth a control message.  :class:`EdgeGossipSub` does the
   same.
5. **Peer exchange within bounds.**  py-libp2p dials every peer a PRUNE names, from any sender
   and for any topic, even with ``do_px`` off, inside the loop that reads the sender's RPCs;
   sends no PX when a mesh overflows ``degree_high``; and answers a GRAFT for a topic it is not
   in with PX naming that topic's peers.  :class:`EdgeGossipSub` hands received PX to
   :class:`._p2p_px.PeerExchange` (gated, capped, rate limited, dialled in the background),
   sends PX only for topics it is in (mesh overflow included) and only peers with signed records.
   It also backs off from the peers a heartbeat prunes, which py-libp2p does not (it grafted
   them again within seconds, and they logged and penalised that as a GRAFT flood).
6. **A dial-back's closing is not an error.**  edgenode's AutoNAT server proves an address
   reachable with a TCP connection and the security handshake, then closes (``_p2p_nat``):
   a full connection would make the asker's swarm close an older one.  The asker's
   py-libp2p then logs "fail to upgrade mux" at ERROR for every probe (it logs a failed
   security handshake, the same kind of churn, at DEBUG); :class:`_MuxChurnAtDebug` moves
   that record to DEBUG.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

__all__ = ["IDONTWANT_THRESHOLD", "EdgeGossipSub", "install", "open_receive_window", "BULK_WINDOW", "CHANNEL_WINDOW"]

IDONTWANT_THRESHOLD = 1024
"""Messages at least this large (bytes of data) trigger IDONTWANT, as in go-libp2p."""

BULK_WINDOW = 16 * 1024 * 1024
"""The receive window a bulk stream announces at once (yamux's own ceiling, go-yamux's too)."""

CHANNEL_WINDOW = 1024 * 1024
"""The receive window of a request channel (both ends): a 1 MiB ledger range or receipt
flows without waiting for a window update."""

_RECORD_CACHE = 4096
_lock = threading.Lock()
_installed = False


def install() -> None:
    """Apply the process-wide adjustments (idempotent; call before building a host)."""
    global _installed
    with _lock:
        if _installed:
            return
        import libp2p.pubsub.floodsub as floodsub_mod
        import libp2p.pubsub.gossipsub as gossipsub_mod
        import libp2p.pubsub.pubsub as pubsub_mod
        from libp2p.stream_muxer.yamux.yamux import YamuxStream

        YamuxStream._auto_tune_and_send_window_update = _credit_half_window  # type: ignore[method-assign]
        env = _cached_env(getattr(pubsub_mod, "env_to_send_in_RPC"))  # noqa: B009  # not re-exported
        for mod in (pubsub_mod, gossipsub_mod):
            mod.env_to_send_in_RPC = env  # type: ignore[attr-defined]
        consume = _consume_once(getattr(pubsub_mod, "maybe_consume_signed_record"))  # noqa: B009
        for mod in (pubsub_mod, gossipsub_mod, floodsub_mod):
            mod.maybe_consume_signed_record = consume  # type: ignore[attr-defined]
        logging.getLogger("libp2p.network.swarm").addFilter(_MuxChurnAtDebug())
        _installed = True


MUX_FAILURE = "fail to upgrade mux for peer %s"
"""py-libp2p's swarm log message when an inbound connection closes between security and muxer (6)."""


class _MuxChurnAtDebug(logging.Filter):
    """Log py-libp2p's inbound "fail to upgrade mux" at DEBUG, not ERROR (adjustment 6)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != MUX_FAILURE or record.levelno <= logging.DEBUG:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def _cached_env(original: Any) -> Any:
    """``env_to_send_in_RPC`` from a per-host cache (a host's listen addresses are fixed once listening)."""
    cache: dict[int, tuple[Any, bytes]] = {}

    def env_to_send_in_RPC(host: Any) -> tuple[bytes, bool]:  # the name it replaces
        hit = cache.get(id(host))
        if hit is not None and hit[0] is host:
            return hit[1], False
        env, created = original(host)
        if host.get_addrs():  # before listening the record would name no address: do not keep it
            if len(cache) >= 64:
                cache.clear()
            cache[id(host)] = (host, env)
        return env, created

    env_to_send_in_RPC.edgenode_tuned = True  # type: ignore[attr-defined]
    return env_to_send_in_RPC


def _consume_once(original: Any) -> Any:
    """``maybe_consume_signed_record`` that skips a record already verified for the same sender."""
    seen: OrderedDict[tuple[int, bytes, bytes], None] = OrderedDict()
    lock = threading.Lock()

    def maybe_consume_signed_record(msg: Any, host: Any, peer_id: Any) -> bool:
        if not msg.HasField("senderRecord"):
            return True
        # per receiving host too: each host's peerstore must have consumed the record once
        key = (id(host), peer_id.to_bytes() if peer_id is not None else b"", bytes(msg.senderRecord))
        with lock:
            if key in seen:
                seen.move_to_end(key)
                return True
        ok = bool(original(msg, host, peer_id))
        if ok:
            with lock:
                seen[key] = None
                if len(seen) > _RECORD_CACHE:
                    seen.popitem(last=False)
        return ok

    maybe_consume_signed_record.edgenode_tuned = True  # type: ignore[attr-defined]
    return maybe_consume_signed_record


def _gossipsub_base() -> type:
    from libp2p.pubsub.gossipsub import GossipSub

    return GossipSub


class _Lazy:
    cls: type | None = None


def EdgeGossipSub(**kwargs: Any) -> Any:  # a class factory: libp2p is imported lazily
    """A GossipSub that sends IDONTWANT only for messages of :data:`IDONTWANT_THRESHOLD` bytes or more,
    and whose peer exchange goes through its ``edge_px`` (a :class:`._p2p_px.PeerExchange`; None: PX
    received is dropped, none is sent)."""
    if _Lazy.cls is None:
        base: Any = _gossipsub_base()

        class _EdgeGossipSub(base):  # type: ignore[misc,valid-type]
            _edgenode_size = 0

            async def publish(self, msg_forwarder: Any, pubsub_msg: Any) -> None:
                # publish() reaches _emit_idontwant_for_message without awaiting anything
                # before it, so the size noted here is this message's (one trio thread).
                self._edgenode_size = len(pubsub_msg.data)
                await super().publish(msg_forwarder, pubsub_msg)

            async def _emit_idontwant_for_message(self, msg_id: bytes, topic_ids: Any) -> None:
                if self._edgenode_size >= IDONTWANT_THRESHOLD:
                    await super()._emit_idontwant_for_message(msg_id, topic_ids)

            # -- peer exchange (5): judged by edge_px (a _p2p_px.PeerExchange), never by py-libp2p
            edge_px: Any = None

            async def handle_prune(self, prune_msg: Any, sender_peer_id: Any) -> None:
                entries = list(prune_msg.peers)
                if entries:  # py-libp2p would dial them all (_do_px), whoever sent them
                    bare = type(prune_msg)()
                    bare.CopyFrom(prune_msg)
                    del bare.peers[:]
                    prune_msg = bare
                await super().handle_prune(prune_msg, sender_peer_id)
                if entries and self.edge_px is not None:
                    topic = prune_msg.topicID
                    scorer = self.scorer
                    self.edge_px.on_prune(
                        sender_peer_id, entries, joined=topic in self.mesh,
                        sender_ok=scorer is None or bool(scorer.allow_px_from(sender_peer_id, [topic])),
                    )

            async def _do_px(self, px_peers: Any) -> None:
                return None  # unreachable through handle_prune above; kept inert should another path call it

            async def emit_prune(self, topic: str, to_peer: Any, do_px: bool, is_unsubscribe: bool) -> None:
                from libp2p.pubsub.pb import rpc_pb2

                prune = rpc_pb2.ControlPrune(
                    topicID=topic, backoff=self.unsubscribe_back_off if is_unsubscribe else self.prune_back_off
                )
                # PX only for a topic this node is in (py-libp2p also answers a GRAFT for an unknown
                # topic with PX, naming whoever announced it: a leak go-libp2p avoids)
                if do_px and self.edge_px is not None and topic in self.mesh and self.pubsub is not None:
                    candidates = self.pubsub.peer_topics.get(topic, set())
                    for pid, record in self.edge_px.offer(to_peer, list(candidates)):
                        prune.peers.append(rpc_pb2.PeerInfo(peerID=pid, signedPeerRecord=record))
                control = rpc_pb2.ControlMessage()
                control.prune.extend([prune])
                await self.emit_control_message(control, to_peer)

            async def _emit_control_msgs(self, peers_to_graft: Any, peers_to_prune: Any, peers_to_gossip: Any) -> None:
                # a mesh over degree_high: back off from the peers pruned (the spec's rule, go-libp2p's
                # too; py-libp2p grafts them again at once, which they punish as a GRAFT flood) and,
                # with PX on, name other peers in the PRUNEs, as go-libp2p does
                for peer, topics in peers_to_prune.items():
                    for topic in topics:
                        self._add_back_off(peer, topic, False)
                if self.do_px and peers_to_prune:
                    for peer, topics in list(peers_to_prune.items()):
                        for topic in topics:
                            await self.emit_prune(topic, peer, True, False)
                    peers_to_prune.clear()
                await super()._emit_control_msgs(peers_to_graft, peers_to_prune, peers_to_gossip)

        _Lazy.cls = _EdgeGossipSub
    return _Lazy.cls(**kwargs)


async def open_receive_window(stream: Any, size: int = BULK_WINDOW) -> bool:
    """Let the peer send up to ``size`` bytes on ``stream`` without waiting for window updates.

    One WINDOW_UPDATE now instead of one per doubling later; False (nothing sent) when the
    stream is not a py-libp2p yamux stream (e.g. QUIC, which has its own flow control).
    """
    from libp2p.stream_muxer.yamux.yamux import YamuxStream

    ys = getattr(stream, "muxed_stream", None)
    if not isinstance(ys, YamuxStream):
        return False
    async with ys.window_lock:
        extra = size - ys.recv_window
        if extra <= 0:
            return False
        ys.recv_window += extra
        ys.target_recv_window = max(ys.target_recv_window, size)
    await ys.send_window_update(extra, skip_lock=True)
    return True


async def _credit_half_window(self: Any, *, bytes_read: int = 0) -> None:
    """Replaces ``YamuxStream._auto_tune_and_send_window_update``: credit back consumed bytes
    in one WINDOW_UPDATE once they reach half of the stream's window (go-yamux's rule)."""
    async with self.window_lock:
        if bytes_read > 0:
            self._pending_recv_release += bytes_read
        pending = self._pending_recv_release
        if pending <= 0 or pending < self.target_recv_window // 2:
            return
        self._pending_recv_release = 0
        self.recv_window += pending
    await self.send_window_update(pending, skip_lock=True)
