"""The trio side of :mod:`edgenode.net.p2p`: one py-libp2p host with GossipSub.

Everything in :class:`LibP2PNode` runs inside the transport's trio thread
(see :mod:`._p2p_bridge`).  It talks to the asyncio side only through
:class:`NodeHooks` (callbacks that must merely post to the asyncio loop, and one
coroutine for serving requests).  No libp2p type leaves this module: peers are
peer-id strings, payloads are bytes.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import multiaddr
import trio

from ..errors import DecodeError, EdgenodeError, LocalError
from ._errors import RemoteFailure, RequestTimeout, Unreachable
from ._p2p_channel import ChannelClosed, ClientChannel, serve_channel
from ._p2p_config import P2PConfig
from ._p2p_dht import DhtService
from ._p2p_frame import (
    MUX_PROTOCOL,
    RPC_PROTOCOL,
    FrameReader,
    Response,
    decode_request,
    decode_response,
    encode_frame,
    encode_request,
    encode_response,
)
from ._p2p_nat import NatService, reach_peer
from ._p2p_px import PeerExchange, leave_topics
from ._p2p_tuning import BULK_WINDOW, CHANNEL_WINDOW, open_receive_window
from ._p2p_util import (
    Counters,
    close_quietly,
    configure_libp2p_logging,
    dialable,
    peer_id,
    peer_notifee,
    peer_str,
    raise_queue_limits,
    reset_quietly,
)
from ._transport import REASON_NO_HANDLER, REASON_TOO_LARGE, failure_reason

__all__ = ["LibP2PNode", "NodeHooks", "Counters", "NodeSettings", "NoHandler"]

logger = logging.getLogger(__name__)

_READ_CHUNK = 64 * 1024
_NEVER = 1e9
_REDIAL = 10.0
_DISCOVERY_INTERVAL = 1.0
_CLOSE_GRACE = 1.0
_LEAVE_GRACE = 0.5  # seconds ``close`` gives the PRUNEs (with PX) of the topics it leaves


class NoHandler(EdgenodeError):
    """Raised by a dispatch hook when nothing serves the requested protocol."""


@dataclass(frozen=True)
class NodeHooks:
    """How the trio side reaches the asyncio side.  Every callback runs in the trio thread."""

    on_gossip: Callable[[str, str, bytes], None]
    """``(topic, origin peer, data)`` for each validated message; must only post to asyncio."""
    on_peers: Callable[[list[str], list[str]], None]
    """``(joined, left)`` peer ids; must only post to asyncio."""
    dispatch: Callable[[str, str, bytes], Awaitable[bytes]]
    """``await dispatch(sender, protocol, payload)`` answers one request (bridged to asyncio).
    Raises NoHandler when nothing serves ``protocol``; any other exception becomes an error reply."""


@dataclass(frozen=True)
class NodeSettings:
    """What the host is made of."""

    seed: bytes
    """The node's Ed25519 seed: the host key."""
    listen: tuple[str, ...]
    """Multiaddrs to listen on."""
    bootstrap: tuple[str, ...] = ()
    """Multiaddrs (with /p2p/) dialled at start, with retries."""
    mdns: bool = False
    """Discover LAN peers with mDNS and dial them."""
    quic: bool = False
    """Enable the QUIC transport (for /quic-v1 listen addresses)."""
    config: P2PConfig = field(default_factory=P2PConfig)
    """Tuning."""
    gate: Callable[[str], bool] | None = None
    """Swarm mode: who may use this node's DHT and relay (thread-safe, fast); None: anyone."""
    namespace: str = ""
    """Swarm mode: the swarm id, which keys this node's DHT provider records."""


class LibP2PNode:
    """One libp2p host, Pubsub and GossipSub; lives entirely in the trio thread."""

    def __init__(self, settings: NodeSettings, hooks: NodeHooks, counters: Counters) -> None:
        self._s = settings
        self._c = settings.config
        self._hooks = hooks
        self._counters = counters
        self._host: Any = None
        self._pubsub: Any = None
        self._nursery: trio.Nursery | None = None
        self._dials = trio.Semaphore(settings.config.max_concurrent_dials)
        self._known: set[str] = set()
        self._pumps: dict[str, trio.CancelScope] = {}
        self._channels: dict[str, ClientChannel] = {}
        self._channel_locks: dict[str, trio.Lock] = {}
        self._no_channel: dict[str, float] = {}
        """Peers that refused ``/edgenode/rpc/2`` (older nodes): until when to use rpc/1 with them."""
        self._inbound: Counter[str] = Counter()
        self._limits = dict(self._c.request_limits)
        self._request_frame_max = max(self._c.default_request_bytes, *self._limits.values()) + (64 << 10)
        """Largest inbound request frame read (payload limit plus room for the protocol name and ids)."""
        self.peer_id = ""
        self.direct_addrs: list[str] = []
        self.dht: DhtService | None = None
        self.nat: NatService | None = None
        self.px: PeerExchange | None = None

    # -- lifecycle -----------------------------------------------------------------
    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Build and run the host until cancelled; ``task_status.started()`` once listening."""
        from libp2p.custom_types import TProtocol
        from libp2p.tools.anyio_service import background_trio_service

        s = self._s
        configure_libp2p_logging()
        raise_queue_limits(self._c.queue_size)
        try:
            listen = [multiaddr.Multiaddr(a) for a in s.listen]
        except Exception as exc:  # multiaddr raises assorted types for bad input
            raise LocalError(f"bad listen address in {list(s.listen)}: {exc}") from exc
        try:
            host, gossipsub, pubsub = self._build(listen)
        except Exception as exc:  # translate py-libp2p's construction errors at the boundary
            raise LocalError(f"cannot build the libp2p host: {exc}") from exc
        self._host, self._pubsub = host, pubsub
        self.peer_id = host.get_id().to_base58()
        async with host.run(listen_addrs=listen), background_trio_service(pubsub), background_trio_service(gossipsub):
            await pubsub.wait_until_ready()
            host.set_stream_handler(TProtocol(RPC_PROTOCOL), self._on_rpc_stream)
            if self._c.channels:
                host.set_stream_handler(TProtocol(MUX_PROTOCOL), self._on_channel_stream)
            self._guard_handlers()
            self.direct_addrs = [f"{a}/p2p/{self.peer_id}" for a in dialable(host.get_transport_addrs())]
            if not self.direct_addrs:  # py-libp2p logs a failed listen and carries on; we do not
                raise LocalError(f"cannot listen on {list(s.listen)} (address in use or not local?)")
            host.get_network().register_notifee(peer_notifee(self.refresh_peers))
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self.px is not None:
                    self.px.attach(nursery)
                nursery.start_soon(self._poll_peers)
                nursery.start_soon(self._close_idle_channels)
                for addr in s.bootstrap:
                    nursery.start_soon(self._bootstrap_one, addr)
                if s.mdns:
                    nursery.start_soon(self._dial_discovered)
                self.nat = NatService(host, self._c, self._counters, s.gate)
                await nursery.start(self.nat.run)
                if self._c.dht:
                    self.dht = DhtService(host, self._c, self._counters, s.gate, s.namespace)
                    await nursery.start(self.dht.run)
                self._guard_handlers()  # the relay's, DCUtR's, AutoNAT's and the DHT's too
                task_status.started()
                await trio.sleep_forever()

    @property
    def listen_addrs(self) -> list[str]:
        """Direct listen addresses, then relayed ones (while a relay holds a reservation)."""
        return [*self.direct_addrs, *(self.nat.relayed_addrs if self.nat is not None else ())]

    def _build(self, listen: list[multiaddr.Multiaddr]) -> tuple[Any, Any, Any]:
        from libp2p import new_host
        from libp2p.crypto.ed25519 import create_new_key_pair
        from libp2p.network.config import ConnectionConfig
        from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12
        from libp2p.pubsub.pubsub import Pubsub

        from ._p2p_tuning import EdgeGossipSub, install

        install()

        s, c = self._s, self._c
        # One connection per peer (else connect() waits a fixed 250 ms); no auto-connector:
        # py-libp2p's would redial up to 200 peerstore entries at once, so dials stay ours.
        conn_config = ConnectionConfig(
            max_connections_per_peer=1,
            dial_timeout=c.dial_timeout,
            min_connections=0,
            low_watermark=0,
            auto_connect_interval=_NEVER,
        )
        host = new_host(
            key_pair=create_new_key_pair(s.seed),
            listen_addrs=listen,
            connection_config=conn_config,
            enable_quic=s.quic,
            enable_mDNS=s.mdns,
        )
        gossipsub = EdgeGossipSub(
            protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID],
            degree=c.degree,
            degree_low=c.degree_low,
            degree_high=c.degree_high,
            heartbeat_initial_delay=0.1,
            heartbeat_interval=c.heartbeat_interval,  # type: ignore[arg-type]  # annotated int; only slept on
            # adaptive gossip stretches the heartbeat to 30-60 s when it judges the network unhealthy
            adaptive_gossip_enabled=False,
            max_messages_per_topic_per_second=c.max_messages_per_topic_per_second,
            do_px=c.peer_exchange,
            px_peers_count=c.px_peers,
        )
        self.px = PeerExchange(host, c, self._counters, s.gate, self._dials)
        gossipsub.edge_px = self.px
        gossipsub.max_iwant_requests_per_second = c.max_messages_per_topic_per_second
        gossipsub.max_ihave_messages_per_second = c.max_messages_per_topic_per_second
        pubsub = Pubsub(host, gossipsub, strict_signing=True)
        return host, gossipsub, pubsub

    async def close(self, timeout: float) -> None:
        """Close connections, listeners and transports while not cancelled (cancelling leaks sockets);
        with peer exchange on, leave every topic first (PRUNEs with PX: the mesh heals without us)."""
        for scope in self._pumps.values():
            scope.cancel()
        if self._c.peer_exchange and self._pumps:
            with trio.move_on_after(min(_LEAVE_GRACE, timeout / 2)):
                await leave_topics(self._pubsub, list(self._pumps))
        for ch in list(self._channels.values()):
            await ch.aclose()
        with trio.move_on_after(timeout):
            await self._host.get_network().close()

    def _guard_handlers(self) -> None:
        """Wrap every registered stream handler: one that raises kills pubsub on the connection."""
        handlers = self._host.get_mux().handlers
        for proto, handler in list(handlers.items()):
            if handler is not None and not getattr(handler, "_edgenode_guarded", False):
                handlers[proto] = self._guard(str(proto), handler)

    def _guard(self, proto: str, handler: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        async def guarded(stream: Any) -> None:
            try:
                await handler(stream)
            except Exception as exc:  # contained: an escaping error would kill the connection's pubsub
                self._counters.add("stream_handler_errors")
                logger.debug("stream handler for %s failed: %r", proto, exc)

        guarded._edgenode_guarded = True  # type: ignore[attr-defined]
        return guarded

    # -- peers ---------------------------------------------------------------------
    def _connected(self) -> set[str]:
        conns = self._host.get_network().connections
        return {pid.to_base58() for pid, lst in list(conns.items()) if lst}

    def refresh_peers(self) -> None:
        now = self._connected()
        joined, left = sorted(now - self._known), sorted(self._known - now)
        self._known = now
        if self.nat is not None:
            self.nat.note_connections()
        if joined or left:
            self._counters.add("peer_joins", len(joined))
            self._counters.add("peer_leaves", len(left))
            self._hooks.on_peers(joined, left)

    async def _poll_peers(self) -> None:
        while True:
            self.refresh_peers()
            await trio.sleep(self._c.peer_poll_interval)

    async def connect(self, addr: str, timeout: float) -> str:
        from libp2p.peer.peerinfo import info_from_p2p_addr

        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        except Exception as exc:  # multiaddr/peerinfo raise many unrelated types for bad input
            raise Unreachable(f"not a dialable multiaddr with /p2p/<id>: {addr!r} ({exc})") from exc
        peer = info.peer_id.to_base58()
        if peer == self.peer_id:
            raise Unreachable("cannot dial self")
        if "/p2p-circuit" in addr and self.nat is not None:  # py-libp2p's swarm does not dial relays
            async with self._dials:
                await self.nat.dial_circuit(addr, timeout)
            self.refresh_peers()
            return peer
        with trio.move_on_after(timeout) as scope:
            async with self._dials:
                try:
                    await self._host.connect(info)
                except Exception as exc:  # libp2p raises SwarmException, OSError, MultiError...
                    self._counters.add("dial_failures")
                    raise Unreachable(f"cannot reach {addr}: {exc}") from exc
        if scope.cancelled_caught:
            self._counters.add("dial_failures")
            raise Unreachable(f"dialling {addr} timed out after {timeout} s")
        self._counters.add("dials")
        self.refresh_peers()
        return peer

    async def disconnect(self, peer: str) -> None:
        """Close every connection to ``peer`` (used by the zero-trust layer to drop refused peers)."""
        from libp2p.peer.id import ID

        try:
            await self._host.disconnect(ID.from_base58(peer))
        except Exception as exc:  # libp2p raises many unrelated types for a bad id or a dead connection
            raise Unreachable(f"cannot disconnect {peer}: {exc}") from exc
        self.refresh_peers()

    async def _bootstrap_one(self, addr: str) -> None:
        """Dial one bootstrap address, retrying until ``bootstrap_timeout`` runs out."""
        with trio.move_on_after(self._c.bootstrap_timeout):
            while True:
                try:
                    await self.connect(addr, self._c.dial_timeout)
                except Unreachable as exc:
                    logger.debug("bootstrap %s: %s; retrying", addr, exc)
                    await trio.sleep(self._c.bootstrap_retry_interval)
                else:
                    return
        self._counters.add("bootstrap_failures")
        logger.warning("bootstrap peer %s unreachable for %s s; giving up", addr, self._c.bootstrap_timeout)

    async def _dial_discovered(self) -> None:
        """mDNS only fills the peerstore: dial what it found (each peer at most every ``_REDIAL`` s)."""
        store = self._host.get_peerstore()
        tried: dict[str, float] = {}
        while True:
            now = trio.current_time()
            connected = self._connected()
            for pid in list(store.peers_with_addrs()):
                peer = pid.to_base58()
                if peer == self.peer_id or peer in connected or now - tried.get(peer, -_REDIAL) < _REDIAL:
                    continue
                tried[peer] = now
                addrs = [f"{a}/p2p/{peer}" for a in store.addrs(pid) if "/p2p/" not in str(a)]
                if addrs and self._nursery is not None:
                    self._nursery.start_soon(self._dial_quietly, addrs[0])
            await trio.sleep(_DISCOVERY_INTERVAL)

    async def _dial_quietly(self, addr: str) -> None:
        try:
            await self.connect(addr, self._c.dial_timeout)
        except Unreachable as exc:
            logger.debug("discovered peer at %s unreachable: %s", addr, exc)

    # -- gossip --------------------------------------------------------------------
    async def publish(self, topic: str, data: bytes) -> None:
        await self._pubsub.publish(topic, data)

    async def subscribe(self, topic: str) -> None:
        """Join ``topic`` and pump its messages to the asyncio side until :meth:`unsubscribe`."""
        if topic in self._pumps or self._nursery is None:
            return
        sub = await self._pubsub.subscribe(topic)
        scope = trio.CancelScope()
        self._pumps[topic] = scope
        self._nursery.start_soon(self._pump, topic, sub, scope)

    async def _pump(self, topic: str, sub: Any, scope: trio.CancelScope) -> None:
        with scope:
            while True:
                msg = await sub.get()
                sender = peer_str(msg.from_id)
                if sender is None or sender == self.peer_id:
                    continue
                self._hooks.on_gossip(topic, sender, bytes(msg.data))

    async def unsubscribe(self, topic: str) -> None:
        scope = self._pumps.pop(topic, None)
        if scope is None:
            return
        scope.cancel()
        await self._pubsub.unsubscribe(topic)

    def set_validator(self, topic: str, validator: Callable[[str, bytes], bool]) -> None:
        def check(_forwarder: Any, msg: Any) -> bool:
            sender = peer_str(msg.from_id)
            try:
                ok = sender is not None and bool(validator(sender, bytes(msg.data)))
            except Exception as exc:  # a raising validator rejects the message; it never crashes the node
                logger.debug("validator for %s raised %r", topic, exc)
                ok = False
            if not ok:
                self._counters.add("gossip_dropped_invalid")
            return ok

        self._pubsub.set_topic_validator(topic, check, False)

    # -- requests ------------------------------------------------------------------
    async def request(self, peer: str, protocol: str, data: bytes, timeout: float) -> bytes:
        """One request on ``protocol``; the response payload, or Unreachable/RemoteFailure/RequestTimeout.

        Small requests share the peer's persistent channel (``/edgenode/rpc/2``); bulk
        protocols (blobs), and peers without the channel, get a stream of their own.
        """
        with trio.move_on_after(timeout):
            if (
                not self._c.channels
                or protocol in self._c.bulk_protocols
                or self._no_channel.get(peer, 0.0) > trio.current_time()
            ):
                return await self._request_stream(peer, protocol, data, timeout)
            for attempt in (0, 1):
                ch = await self._channel(peer)
                if ch is None:
                    return await self._request_stream(peer, protocol, data, timeout)
                try:
                    ok, body = await ch.request(protocol, data)
                except ChannelClosed as exc:
                    if exc.sent or attempt:  # it may have run there: never send a request twice
                        raise RemoteFailure(f"{peer} on {protocol}: {exc}") from exc
                    continue
                if not ok:
                    raise RemoteFailure(f"{peer} on {protocol}: {body.decode('utf-8', 'replace')}")
                return body
        raise RequestTimeout(f"no answer from {peer} on {protocol} within {timeout} s")

    async def _channel(self, peer: str) -> ClientChannel | None:
        """The live channel to ``peer``, opened if needed; None if the peer does not speak rpc/2."""
        from libp2p.custom_types import TProtocol

        ch = self._channels.get(peer)
        if ch is not None and not ch.closed:
            return ch
        lock = self._channel_locks.setdefault(peer, trio.Lock())
        async with lock:
            ch = self._channels.get(peer)
            if ch is not None and not ch.closed:
                return ch
            pid = await self._reach(peer)
            try:
                stream = await self._host.new_stream(pid, [TProtocol(MUX_PROTOCOL)])
            except Exception as exc:  # negotiation refused (an older peer) or the stream failed
                logger.debug("no channel to %s (%r); using a stream per request", peer, exc)
                self._counters.add("channel_fallbacks")
                self._no_channel[peer] = trio.current_time() + self._c.channel_retry_s
                return None
            await open_receive_window(stream, CHANNEL_WINDOW)
            ch = ClientChannel(peer, stream, self._c.max_frame_bytes, self._c.max_inflight_per_peer, self._counters)
            self._channels[peer] = ch
            self._counters.add("channels_opened")
            assert self._nursery is not None
            self._nursery.start_soon(self._run_channel, ch)
            return ch

    async def _run_channel(self, ch: ClientChannel) -> None:
        await ch.run_reader()
        if self._channels.get(ch.peer) is ch:
            del self._channels[ch.peer]
            self._channel_locks.pop(ch.peer, None)

    async def _close_idle_channels(self) -> None:
        idle = self._c.channel_idle_s
        while True:
            await trio.sleep(idle / 4)
            now = trio.current_time()
            for ch in list(self._channels.values()):
                if ch.idle and now - ch.last_used > idle:
                    self._counters.add("channels_closed_idle")
                    await ch.aclose()
            for peer, until in list(self._no_channel.items()):
                if until <= now:
                    del self._no_channel[peer]

    async def _reach(self, peer: str) -> Any:
        """The libp2p ID of ``peer``, dialled from the peerstore if not connected (Unreachable if not)."""
        pid = peer_id(peer)
        if pid is None:
            raise Unreachable(f"not a peer id: {peer!r}")
        if not self._host.get_network().connections.get(pid):
            async with self._dials:  # known addresses, else the DHT's; direct first, then relays
                await reach_peer(self._host, pid, self.dht, self.nat, self._c.dial_timeout)
        return pid

    async def _request_stream(self, peer: str, protocol: str, data: bytes, timeout: float) -> bytes:
        frame = encode_frame(encode_request(protocol, data), self._c.max_frame_bytes)
        reply = await self.exchange(peer, frame, timeout, what=protocol, bulk=protocol in self._c.bulk_protocols)
        try:
            response = decode_response(reply)
        except DecodeError as exc:
            raise RemoteFailure(f"{peer} sent a malformed response on {protocol}: {exc}") from exc
        if not response.ok:
            raise RemoteFailure(f"{peer} on {protocol}: {response.message}")
        return response.payload

    async def exchange(self, peer: str, raw: bytes, timeout: float, what: str = "rpc", bulk: bool = False) -> bytes:
        """Open an RPC stream to ``peer``, write ``raw`` (normally one frame), return the reply frame's body."""
        from libp2p.custom_types import TProtocol

        with trio.move_on_after(timeout):
            pid = await self._reach(peer)
            try:
                stream = await self._host.new_stream(pid, [TProtocol(RPC_PROTOCOL)])
            except Exception as exc:  # StreamFailure, SwarmException, negotiation errors
                raise Unreachable(f"cannot open a stream to {peer}: {exc}") from exc
            finished = False
            try:
                if bulk:
                    await open_receive_window(stream, min(BULK_WINDOW, self._c.max_frame_bytes))
                await stream.write(raw)
                reply: bytes = await self._read_frame(stream)
                finished = True
            except Exception as exc:  # reset, EOF, malformed frame: the peer broke the exchange
                raise RemoteFailure(f"{peer} broke the exchange on {what}: {exc}") from exc
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_GRACE):
                    await (close_quietly(stream) if finished else reset_quietly(stream))
            return reply
        raise RequestTimeout(f"no answer from {peer} on {what} within {timeout} s")

    def _request_limit(self, protocol: str) -> int:
        return self._limits.get(protocol, self._c.default_request_bytes)

    async def _read_frame(self, stream: Any, limit: int | None = None) -> bytes:
        from libp2p.network.stream.exceptions import StreamEOF

        reader = FrameReader(self._c.max_frame_bytes if limit is None else limit)
        while True:
            try:
                chunk = await stream.read(min(reader.wanted, _READ_CHUNK))
            except StreamEOF:
                chunk = b""
            if not chunk:
                reader.eof()
            frame = reader.feed(chunk)
            if frame is not None:
                return frame

    def _admit_inbound(self, sender: str) -> bool:
        """Count one more inbound request stream from ``sender``; False past the per-peer bound."""
        if self._inbound[sender] >= self._c.max_inbound_streams_per_peer:
            self._counters.add("requests_refused_streams")
            return False
        self._inbound[sender] += 1
        return True

    def _release_inbound(self, sender: str) -> None:
        self._inbound[sender] -= 1
        if self._inbound[sender] <= 0:
            del self._inbound[sender]

    async def _on_channel_stream(self, stream: Any) -> None:
        """Serve an inbound ``/edgenode/rpc/2`` channel until the requester closes it (never raises)."""
        sender = stream.muxed_conn.peer_id.to_base58()
        if not self._admit_inbound(sender):
            await reset_quietly(stream)
            return
        try:
            await open_receive_window(stream, CHANNEL_WINDOW)
            await serve_channel(
                stream, sender, self._hooks.dispatch, max_frame=self._request_frame_max,
                max_concurrent=self._c.max_concurrent_per_channel, handler_timeout=self._c.handler_timeout,
                counters=self._counters, no_handler=NoHandler, request_limit=self._request_limit,
                max_response=self._c.max_frame_bytes,
            )
        finally:
            self._release_inbound(sender)

    async def _on_rpc_stream(self, stream: Any) -> None:
        """Serve one request on an inbound stream (guarded: never raises)."""
        sender = stream.muxed_conn.peer_id.to_base58()
        if not self._admit_inbound(sender):
            await reset_quietly(stream)
            return
        try:
            with trio.move_on_after(self._c.handler_timeout) as scope:
                frame = await self._read_frame(stream, self._request_frame_max)
                protocol, payload = decode_request(frame)
                try:
                    if len(payload) > self._request_limit(protocol):
                        self._counters.add("requests_too_large")
                        raise DecodeError(f"request of {len(payload)} bytes on {protocol} over its limit")
                    self._counters.add("requests_served")
                    reply = Response(ok=True, payload=await self._hooks.dispatch(sender, protocol, payload))
                except NoHandler:
                    self._counters.add("requests_unhandled")
                    reply = Response(ok=False, message=REASON_NO_HANDLER)
                except Exception as exc:  # a reason code to the requester, the detail to our log
                    self._counters.add("requests_failed")
                    logger.debug("handler for %s failed for %s: %r", protocol, sender, exc)
                    reply = Response(ok=False, message=failure_reason(exc))
                out = encode_response(reply)
                if len(out) + 4 > self._c.max_frame_bytes:
                    out = encode_response(Response(ok=False, message=REASON_TOO_LARGE))
                await stream.write(encode_frame(out, self._c.max_frame_bytes))
                await close_quietly(stream)
            if scope.cancelled_caught:
                self._counters.add("requests_handler_timed_out")
                await reset_quietly(stream)
        except Exception as exc:  # malformed request or a broken stream: drop it, count it
            self._counters.add("requests_bad")
            logger.debug("bad request stream from %s: %r", sender, exc)
            await reset_quietly(stream)
        finally:
            self._release_inbound(sender)
