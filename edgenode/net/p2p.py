"""The real transport: py-libp2p 0.8.1 (TCP + Noise + yamux, GossipSub) in its own trio thread.

Usage::

    t = P2PTransport(identity, listen=["/ip4/127.0.0.1/tcp/0"])
    await t.start()
    await t.connect(other_addr)
    await t.publish("topic", b"data")
    await t.stop()

py-libp2p is trio-only; the host, Pubsub and GossipSub (:mod:`._p2p_host`) live in one
trio thread per asyncio loop, shared by every host of that loop and bridged to it
(:mod:`._p2p_bridge`).  Requests travel on one persistent multiplexed stream per peer
(``/edgenode/rpc/2``, :mod:`._p2p_channel`), blobs and older peers on a stream per request
(``/edgenode/rpc/1``), in length-prefixed frames (:mod:`._p2p_frame`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from ..errors import EdgenodeError, LocalError
from ..identity import Identity
from ..tasksets import TaskSet
from ._errors import NotRunning, RequestTimeout
from ._p2p_bridge import Child, SharedTrioThread, TrioThread
from ._p2p_config import P2PConfig
from ._p2p_frame import RPC_PROTOCOL
from ._p2p_host import Counters, LibP2PNode, NodeHooks, NodeSettings, NoHandler
from ._p2p_util import multiaddrs_valid
from ._transport import GossipMessage, Handler, PeerEvent, PeerEventKind, Subscription, Transport, Validator

__all__ = ["P2PTransport", "P2PConfig", "RPC_PROTOCOL"]

_CLOSED = object()


class _Subscription:
    """Async iterator over one topic's messages; ``aclose()`` unsubscribes and ends it."""

    def __init__(self, owner: P2PTransport, topic: str, size: int) -> None:
        self._owner = owner
        self.topic = topic
        self.queue: asyncio.Queue[GossipMessage | object] = asyncio.Queue(size)
        self._closed = False

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> GossipMessage:
        if self._closed:
            raise StopAsyncIteration
        item = await self.queue.get()
        if not isinstance(item, GossipMessage):
            self._closed = True
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._owner._drop_subscription(self)
            while not self.queue.empty():  # drop what is buffered; wake a reader waiting in get()
                self.queue.get_nowait()
            self.queue.put_nowait(_CLOSED)


class _PeerEvents:
    def __init__(self, owner: P2PTransport) -> None:
        self._owner = owner
        self.queue: asyncio.Queue[PeerEvent | object] = asyncio.Queue()
        self._closed = False

    def __aiter__(self) -> _PeerEvents:
        return self

    async def __anext__(self) -> PeerEvent:
        if self._closed:
            raise StopAsyncIteration
        item = await self.queue.get()
        if not isinstance(item, PeerEvent):
            self._closed = True
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        self._closed = True
        self._owner._event_streams.discard(self)


class P2PTransport(Transport):
    """:class:`~edgenode.net.Transport` over py-libp2p; the node's identity is the host key.

    ``listen`` defaults to ``/ip4/127.0.0.1/tcp/0`` (``.../udp/0/quic-v1`` with ``quic``);
    ``bootstrap`` addresses are dialled at start (retried for ``config.bootstrap_timeout``);
    ``mdns`` dials peers found on the LAN.  Request handlers run on the caller's asyncio
    loop; topic validators run in the network thread, so they must be thread-safe and fast
    (a pure decoder is ideal).
    """

    def __init__(
        self,
        identity: Identity,
        *,
        listen: list[str] | None = None,
        bootstrap: list[str] | None = None,
        mdns: bool = False,
        quic: bool = False,
        config: P2PConfig | None = None,
        gate: Callable[[str], bool] | None = None,
        namespace: str = "",
    ) -> None:
        self._identity = identity
        self._gate = gate
        self._namespace = namespace
        self._config = config or P2PConfig()
        default_listen = "/ip4/127.0.0.1/udp/0/quic-v1" if quic else "/ip4/127.0.0.1/tcp/0"
        self._listen = tuple(listen or [default_listen])
        self._bootstrap = tuple(bootstrap or [])
        multiaddrs_valid(self._listen + self._bootstrap)
        has_quic = any("/quic" in a for a in self._listen)
        if quic and not has_quic:
            raise LocalError("quic=True needs a listen address like /ip4/0.0.0.0/udp/4001/quic-v1")
        if has_quic and not quic:
            raise LocalError("a /quic-v1 listen address needs quic=True")
        self._mdns = mdns
        self._quic = quic
        self._counters = Counters()
        self._bridge = TrioThread("edgenode-p2p")  # not started: calls raise NotRunning until start()
        self._shared: SharedTrioThread | None = None
        self._child: Child | None = None
        self._node: LibP2PNode | None = None
        self._running = False
        self._stopped = False
        self._peers: set[str] = set()
        self._subs: dict[str, set[_Subscription]] = {}
        self._event_streams: set[_PeerEvents] = set()
        self._handlers: dict[str, Handler] = {}
        self._validators: dict[str, Validator] = {}
        self._tasks = TaskSet()
        """Bridge calls started without a caller to await them (unsubscribes)."""

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        if self._running or self._stopped:
            raise NotRunning("a P2PTransport starts once")
        settings = NodeSettings(
            seed=self._identity.seed,
            listen=self._listen,
            bootstrap=self._bootstrap,
            mdns=self._mdns,
            quic=self._quic,
            config=self._config,
            gate=self._gate,
            namespace=self._namespace,
        )
        hooks = NodeHooks(on_gossip=self._post_gossip, on_peers=self._post_peers, dispatch=self._dispatch_bridged)
        node = LibP2PNode(settings, hooks, self._counters)
        shared = SharedTrioThread.for_running_loop()
        self._bridge = await shared.acquire(self._config.start_timeout)
        try:
            self._child = await self._bridge.start_child(node.run, self._config.start_timeout)
        except BaseException as exc:
            await shared.release(self._config.stop_timeout)
            if isinstance(exc, EdgenodeError) or not isinstance(exc, Exception):
                raise
            raise LocalError(f"the libp2p host failed to start: {exc!r}") from exc
        self._shared = shared
        self._node = node
        self._running = True
        for topic, validator in self._validators.items():
            await self._bridge.call(self._set_validator_async, topic, validator)
        for topic in self._subs:
            await self._bridge.call(node.subscribe, topic)

    async def stop(self) -> None:
        if not self._running:
            self._stopped = True
            return
        self._running = False
        self._stopped = True
        if self._node is not None:
            with contextlib.suppress(NotRunning):  # the network thread already ended: nothing to close
                await self._bridge.call(self._node.close, self._config.stop_timeout / 2)
        if self._child is not None:
            with contextlib.suppress(NotRunning):
                await self._bridge.stop_child(self._child, self._config.stop_timeout / 2)
        if self._shared is not None:
            await self._shared.release(self._config.stop_timeout)
        for subs in self._subs.values():
            for sub in subs:
                if sub.queue.full():
                    sub.queue.get_nowait()
                sub.queue.put_nowait(_CLOSED)
        for stream in list(self._event_streams):
            stream.queue.put_nowait(_CLOSED)
        self._peers.clear()

    @property
    def peer_id(self) -> str:
        return self._identity.peer_id

    @property
    def listen_addrs(self) -> list[str]:
        return list(self._node.listen_addrs) if self._node is not None else []

    def _live(self) -> LibP2PNode:
        if not self._running or self._node is None:
            raise NotRunning("the transport is not running")
        return self._node

    # -- peers -----------------------------------------------------------------------
    async def connect(self, addr: str, timeout: float = 10.0) -> str:
        node = self._live()
        return await self._bridge.call(node.connect, addr, timeout)

    def peers(self) -> list[str]:
        return sorted(self._peers)

    async def disconnect(self, peer: str) -> None:
        await self._bridge.call(self._live().disconnect, peer)

    def peer_events(self) -> AsyncIterator[PeerEvent]:
        stream = _PeerEvents(self)
        if self._stopped:
            stream.queue.put_nowait(_CLOSED)
        else:
            self._event_streams.add(stream)
        return stream

    def _post_peers(self, joined: list[str], left: list[str]) -> None:
        self._bridge.post(self._on_peers, joined, left)

    def _on_peers(self, joined: list[str], left: list[str]) -> None:
        if not self._running:
            return
        self._peers.update(joined)
        self._peers.difference_update(left)
        events = [PeerEvent(PeerEventKind.JOIN, p) for p in joined] + [PeerEvent(PeerEventKind.LEAVE, p) for p in left]
        for stream in self._event_streams:
            for ev in events:
                stream.queue.put_nowait(ev)

    # -- gossip ----------------------------------------------------------------------
    async def publish(self, topic: str, data: bytes) -> None:
        node = self._live()
        await self._bridge.call(node.publish, topic, bytes(data))
        self._counters.add("gossip_published")

    def subscribe(self, topic: str) -> Subscription:
        sub = _Subscription(self, topic, self._config.subscriber_queue)
        subs = self._subs.setdefault(topic, set())
        first = not subs
        subs.add(sub)
        if first and self._running and self._node is not None:
            self._spawn(self._bridge.call(self._node.subscribe, topic))
        return sub

    def _drop_subscription(self, sub: _Subscription) -> None:
        subs = self._subs.get(sub.topic)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[sub.topic]
            if self._running and self._node is not None:
                self._spawn(self._bridge.call(self._node.unsubscribe, sub.topic))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        async def run() -> None:
            with contextlib.suppress(NotRunning):  # stopped meanwhile: gone with the host
                await coro

        self._tasks.spawn(run())

    def _post_gossip(self, topic: str, sender: str, data: bytes) -> None:
        self._bridge.post(self._on_gossip, topic, sender, data)

    def _on_gossip(self, topic: str, sender: str, data: bytes) -> None:
        if not self._running:
            return
        msg = GossipMessage(topic=topic, sender=sender, data=data)
        self._counters.add("gossip_delivered")
        for sub in self._subs.get(topic, ()):
            if sub.queue.full():
                sub.queue.get_nowait()
                self._counters.add("gossip_dropped_slow_subscriber")
            sub.queue.put_nowait(msg)

    def set_validator(self, topic: str, validator: Validator) -> None:
        self._validators[topic] = validator
        if self._running:
            self._spawn(self._bridge.call(self._set_validator_async, topic, validator))

    async def _set_validator_async(self, topic: str, validator: Validator) -> None:
        if self._node is not None:
            self._node.set_validator(topic, validator)

    # -- requests --------------------------------------------------------------------
    async def request(self, peer: str, protocol: str, data: bytes, timeout: float = 10.0) -> bytes:
        node = self._live()
        self._counters.add("requests_sent")
        try:
            return await self._bridge.call(node.request, peer, protocol, bytes(data), timeout)
        except RequestTimeout:
            self._counters.add("requests_timed_out")
            raise
        except Exception:
            self._counters.add("requests_errors")
            raise

    def serve(self, protocol: str, handler: Handler) -> None:
        self._handlers[protocol] = handler

    async def _dispatch(self, sender: str, protocol: str, data: bytes) -> bytes:
        handler = self._handlers.get(protocol)
        if handler is None:
            raise NoHandler(protocol)
        return bytes(await handler(sender, data))

    async def _dispatch_bridged(self, sender: str, protocol: str, data: bytes) -> bytes:
        return await self._bridge.call_asyncio(self._dispatch, sender, protocol, data)

    # -- beyond the LAN: DHT, relays, hole punching (docs/net.md, "Behind NATs") -----
    async def find_peer(self, peer: str) -> list[str]:
        """Addresses of ``peer`` found through the DHT, each ending in ``/p2p/<peer>`` so that
        :meth:`connect` dials it (relayed ones too); [] if unknown, or without a DHT."""
        node = self._live()
        dht = node.dht
        found: list[str] = [] if dht is None else await self._bridge.call(dht.find_peer, peer)
        tail = f"/p2p/{peer}"
        return list(dict.fromkeys(a if a.endswith(tail) else a + tail for a in found))

    async def provide(self, sha256: str) -> bool:
        """Announce in the DHT that this node serves the blob ``sha256``; False if no peer took the record."""
        dht = self._live().dht
        return False if dht is None else bool(await self._bridge.call(dht.provide, sha256))

    async def find_providers(self, sha256: str, limit: int = 20) -> list[str]:
        """Peers the DHT names as providers of blob ``sha256`` (their addresses are remembered,
        so ``fetch_blob(peer, sha256)`` dials them)."""
        dht = self._live().dht
        if dht is None:
            return []
        return [peer for peer, _addrs in await self._bridge.call(dht.find_providers, sha256, limit)]

    @property
    def max_provided(self) -> int:
        """``config.dht_max_provided`` (0 without a DHT)."""
        return self._config.dht_max_provided if self._config.dht else 0

    async def dht_table_size(self) -> int:
        """Peers in this node's DHT routing table."""
        dht = self._live().dht
        return 0 if dht is None else await self._bridge.call(self._table_size, dht)

    @staticmethod
    async def _table_size(dht: Any) -> int:
        return int(dht.table_size())

    async def connection_kinds(self) -> dict[str, str]:
        """``peer -> "direct" | "relayed" | "holepunched"`` for every connected peer."""
        nat = self._live().nat
        return {} if nat is None else await self._bridge.call(self._kinds, nat)

    @staticmethod
    async def _kinds(nat: Any) -> dict[str, str]:
        return dict(nat.kinds())

    @property
    def reachability(self) -> str:
        """``public``, ``private`` or ``unknown``: what AutoNAT dial-backs found."""
        nat = self._node.nat if self._node is not None else None
        return "unknown" if nat is None else str(nat.reachability)

    @property
    def relays(self) -> list[str]:
        """Relays holding a reservation for this node (peer ids)."""
        nat = self._node.nat if self._node is not None else None
        return [] if nat is None else sorted(a.split("/p2p/")[1].split("/")[0] for a in nat.relayed_addrs)

    # -- metrics ---------------------------------------------------------------------
    @property
    def counters(self) -> dict[str, int]:
        return self._counters.snapshot()
