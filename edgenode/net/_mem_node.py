"""One node of the in-memory network: the :class:`Transport` that node code holds.

The routing (links, mesh, loss, latency) lives in :class:`MemNetwork`; this
class keeps the node's own state and checks the caller's side of the API.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from ..tasksets import TaskSet
from ._errors import NetError, NotRunning, RequestTimeout, Unreachable
from ._mem_core import Stream
from ._transport import (
    COUNTERS,
    GossipMessage,
    Handler,
    PeerEvent,
    PeerEventKind,
    Subscription,
    Transport,
    Validator,
    failure_reason,
)


class Fabric(Protocol):
    """What a :class:`MemTransport` asks of its network (:class:`~edgenode.net.memnet.MemNetwork`
    implements it): routing, links and the gossip mesh.  The transport holds the node's own
    state (connections, subscriptions, pending requests, counters) in public attributes the
    network reads and writes; nothing else in this package is shared."""

    def lookup(self, peer: str) -> MemTransport: ...
    def check_dialable(self, src: MemTransport, dst: MemTransport) -> None: ...
    def handshake(self, src: MemTransport, dst: MemTransport, done: asyncio.Future[None]) -> None: ...
    def link_up(self, a: MemTransport, b: MemTransport) -> None: ...
    def link_down(self, a: MemTransport, b: MemTransport) -> None: ...
    def node_down(self, node: MemTransport) -> None: ...
    def joined_topic(self, node: MemTransport, topic: str) -> None: ...
    def left_topic(self, node: MemTransport, topic: str) -> None: ...
    def publish_from(self, node: MemTransport, topic: str, data: bytes) -> None: ...
    def send_request(self, src: MemTransport, dst: MemTransport, rid: int, protocol: str, data: bytes) -> None: ...
    def send_response(self, src: MemTransport, dst: MemTransport, rid: int, ok: bool, payload: bytes) -> None: ...
    def provide(self, node: MemTransport, digest: str) -> bool: ...
    def providers(self, node: MemTransport, digest: str, limit: int) -> list[str]: ...
    @property
    def max_provided(self) -> int: ...

__all__ = ["MemTransport", "ADDR_PREFIX", "COUNTER_NAMES", "addr_peer_id"]

ADDR_PREFIX = "/memory/"
"""memnet addresses are ``/memory/<peer_id>/p2p/<peer_id>``."""

COUNTER_NAMES = (
    *COUNTERS,
    "gossip_sent",
    "gossip_received",
    "gossip_duplicates",
    "gossip_lost",
    "gossip_dropped_not_subscribed",
    "gossip_dropped_crashed",
    "gossip_ihave_sent",
    "gossip_iwant_sent",
    "requests_lost",
)
"""Counters every memnet transport reports (all start at zero): the common :data:`COUNTERS`
and the simulated links' own."""

_NEW, _RUNNING, _STOPPED = 0, 1, 2


def addr_peer_id(addr: str) -> str:
    """The peer id of a memnet address ``/memory/<id>/p2p/<id>`` (or a bare ``/p2p/<id>``)."""
    parts = addr.split("/")
    if len(parts) == 5 and parts[0] == "" and parts[1] == "memory" and parts[3] == "p2p" and parts[2] == parts[4]:
        pid = parts[4]
    elif len(parts) == 3 and parts[0] == "" and parts[1] == "p2p":
        pid = parts[2]
    else:
        raise Unreachable(f"memnet cannot dial {addr!r}: expected /memory/<peer_id>/p2p/<peer_id>")
    if not pid:
        raise Unreachable(f"memnet cannot dial {addr!r}: empty peer id")
    return pid


class MemTransport(Transport):
    """A :class:`Transport` attached to a :class:`MemNetwork`; make it with ``network.add_node``."""

    def __init__(self, network: Fabric, peer_id: str, index: int, node_class: str, queue_size: int) -> None:
        self._net = network
        self._peer_id = peer_id
        self.index = index
        self._class = node_class
        self._queue_size = queue_size
        self._state = _NEW
        self.up = False
        self._crashed = False
        self.epoch = 0
        # ordered sets (dicts) of peer transports: insertion order keeps runs deterministic
        self.conns: dict[MemTransport, None] = {}
        self.saved_conns: list[MemTransport] = []
        self.subs: dict[str, list[Stream[GossipMessage]]] = {}
        self.mesh: dict[str, dict[MemTransport, None]] = {}
        self.fanout: dict[str, dict[MemTransport, None]] = {}
        self.validators: dict[str, Validator] = {}
        self.handlers: dict[str, Handler] = {}
        self.event_streams: list[Stream[PeerEvent]] = []
        self.pending: dict[int, tuple[MemTransport, asyncio.Future[bytes]]] = {}
        self._tasks = TaskSet()
        """Request handlers in flight."""
        self.seq = 0
        self._req_seq = 0
        self.counts: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)

    def __repr__(self) -> str:
        state = "crashed" if self.crashed else ("new", "running", "stopped")[self._state]
        return f"MemTransport({self._peer_id!r}, {state})"

    # -- lifecycle and identity ------------------------------------------------
    async def start(self) -> None:
        if self._state == _STOPPED:
            raise NotRunning("a stopped memnet transport cannot start again; add the node anew")
        if self._state == _RUNNING:
            return
        self._state = _RUNNING
        self.up = not self.crashed

    async def stop(self) -> None:
        """Leave the network: peers see LEAVE, pending requests fail, streams end."""
        if self._state == _STOPPED:
            return
        self._state = _STOPPED
        self.up = False
        self.fail_pending(lambda: NotRunning("transport stopped"))
        self._net.node_down(self)
        await self._tasks.cancel()
        for subs in self.subs.values():
            for s in subs:
                s.close()
        self.subs.clear()
        for es in self.event_streams:
            es.close()
        self.event_streams.clear()

    @property
    def peer_id(self) -> str:
        return self._peer_id

    @property
    def node_class(self) -> str:
        """The class given to ``add_node`` (links can be set per pair of classes)."""
        return self._class

    @property
    def listen_addrs(self) -> list[str]:
        return [f"{ADDR_PREFIX}{self._peer_id}/p2p/{self._peer_id}"]

    @property
    def running(self) -> bool:
        """Started, not stopped, not crashed."""
        return self.up

    @property
    def crashed(self) -> bool:
        return self._crashed

    @property
    def stopped(self) -> bool:
        return self._state == _STOPPED

    def _check_running(self) -> None:
        if self._state != _RUNNING:
            raise NotRunning(f"transport {self._peer_id} is not running")
        if self.crashed:
            raise Unreachable(f"node {self._peer_id} is crashed")

    # -- peers -----------------------------------------------------------------
    async def connect(self, addr: str, timeout: float = 10.0) -> str:
        """Dial a memnet address; the handshake takes one round trip of the link.

        Raises Unreachable for an unknown, stopped, crashed or partitioned peer,
        for this node's own address, and when the round trip exceeds ``timeout``.
        """
        self._check_running()
        pid = addr_peer_id(addr)
        target = self._net.lookup(pid)
        if target is self:
            raise Unreachable("cannot dial self")
        if target in self.conns:
            return pid
        self._net.check_dialable(self, target)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._net.handshake(self, target, done)
        try:
            async with asyncio.timeout(timeout):
                await done
        except TimeoutError as exc:
            raise Unreachable(f"dial to {pid} timed out after {timeout} s") from exc
        self._check_running()
        if target not in self.conns:
            self._net.check_dialable(self, target)
            self._net.link_up(self, target)
        return pid

    def peers(self) -> list[str]:
        return [p.peer_id for p in self.conns]

    async def disconnect(self, peer: str) -> None:
        """Close the connection to ``peer`` at once (both sides see LEAVE, pending requests fail)."""
        self._check_running()
        target = next((p for p in self.conns if p.peer_id == peer), None)
        if target is not None:
            self._net.link_down(self, target)

    def peer_events(self) -> AsyncIterator[PeerEvent]:
        stream: Stream[PeerEvent] = Stream(self._queue_size, self.event_streams.remove)
        if self._state != _STOPPED:
            self.event_streams.append(stream)
        else:
            stream.close()
        return stream

    def emit(self, kind: PeerEventKind, peer: MemTransport) -> None:
        if not self.event_streams:
            return
        ev = PeerEvent(kind, peer.peer_id)
        for s in self.event_streams:
            if not s.put(ev):
                self.counts["peer_events_dropped"] += 1

    # -- gossip ----------------------------------------------------------------
    async def publish(self, topic: str, data: bytes) -> None:
        """Gossip to the topic's mesh (or fanout) peers; a crashed node drops it silently."""
        if self._state != _RUNNING:
            raise NotRunning(f"transport {self._peer_id} is not running")
        if self.crashed:
            self.counts["gossip_dropped_crashed"] += 1
            return
        self._net.publish_from(self, topic, bytes(data))

    def subscribe(self, topic: str) -> Subscription:
        stream: Stream[GossipMessage] = Stream(self._queue_size, lambda s: self._unsubscribe(topic, s))
        if self._state == _STOPPED:
            stream.close()
            return stream
        subs = self.subs.get(topic)
        if subs is None:
            self.subs[topic] = [stream]
            self.fanout.pop(topic, None)
            if self.up:
                self._net.joined_topic(self, topic)
        else:
            subs.append(stream)
        return stream

    def _unsubscribe(self, topic: str, stream: Stream[GossipMessage]) -> None:
        subs = self.subs.get(topic)
        if subs is None or stream not in subs:
            return
        subs.remove(stream)
        if not subs:
            del self.subs[topic]
            self._net.left_topic(self, topic)

    def set_validator(self, topic: str, validator: Validator) -> None:
        """Run ``validator(origin, data)`` on every message received on ``topic``; an
        exception in it counts as a rejection."""
        self.validators[topic] = validator

    def mesh_peers(self, topic: str) -> list[str]:
        """The peers this node forwards ``topic`` to (its mesh for the topic)."""
        return [p.peer_id for p in self.mesh.get(topic, ())]

    # -- requests --------------------------------------------------------------
    async def request(self, peer: str, protocol: str, data: bytes, timeout: float = 10.0) -> bytes:
        """Send one request; a peer that is known and reachable but not connected is dialled first.

        Raises Unreachable (unknown, crashed, stopped or partitioned peer, or the
        connection closed while waiting), RequestTimeout (lost request or response,
        slow handler) or RemoteFailure (no handler, handler raised).
        """
        self._check_running()
        target = self._net.lookup(peer)
        if target is self:
            raise Unreachable("cannot send a request to self")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if target not in self.conns:
            await self.connect(target.listen_addrs[0], timeout=timeout)
        fut: asyncio.Future[bytes] = loop.create_future()
        self._req_seq += 1
        rid = self._req_seq
        self.pending[rid] = (target, fut)
        self.counts["requests_sent"] += 1
        try:
            self._net.send_request(self, target, rid, protocol, bytes(data))
            async with asyncio.timeout_at(deadline):
                return await fut
        except TimeoutError as exc:
            self.counts["requests_timed_out"] += 1
            raise RequestTimeout(f"no answer from {peer} on {protocol} within {timeout} s") from exc
        except NetError:
            self.counts["requests_errors"] += 1
            raise
        finally:
            self.pending.pop(rid, None)

    def serve(self, protocol: str, handler: Handler) -> None:
        self.handlers[protocol] = handler

    def spawn_handler(self, handler: Handler, src: MemTransport, rid: int, data: bytes) -> None:
        self._tasks.spawn(self._serve_one(handler, src, rid, data, self.epoch))

    async def _serve_one(self, handler: Handler, src: MemTransport, rid: int, data: bytes, epoch: int) -> None:
        ok = True
        self.counts["requests_served"] += 1
        try:
            resp = await handler(src.peer_id, data)
            if not isinstance(resp, bytes | bytearray | memoryview):
                raise TypeError(f"handler returned {type(resp).__name__}, not bytes")
            payload = bytes(resp)
        except Exception as exc:  # the handler's failure goes back to the requester, never into the network
            ok = False
            # a reason code only (as over libp2p); the detail stays in our log
            payload = failure_reason(exc).encode()
            logging.getLogger("edgenode.net").debug(
                "request handler failed", extra={"sender": src.peer_id, "error": f"{type(exc).__name__}: {exc}"}
            )
            self.counts["requests_failed"] += 1
        if self.up and self.epoch == epoch:
            self._net.send_response(self, src, rid, ok, payload)

    def fail_pending(self, make: Callable[[], NetError], only: MemTransport | None = None) -> None:
        for target, fut in list(self.pending.values()):
            if (only is None or target is only) and not fut.done():
                fut.set_exception(make())

    # -- crash and restart (driven by the network) ------------------------------
    def crash(self) -> None:
        self._crashed = True
        self.up = False
        self.epoch += 1
        self.saved_conns = list(self.conns)
        self.fail_pending(lambda: Unreachable(f"node {self._peer_id} crashed"))
        self._tasks.cancel_now()

    def after_crash(self) -> None:
        for subs in self.subs.values():
            for s in subs:
                s.clear()
        for es in self.event_streams:
            es.clear()

    def restart(self) -> list[MemTransport]:
        self._crashed = False
        self.up = self._state == _RUNNING
        saved, self.saved_conns = self.saved_conns, []
        return saved

    # -- content routing (the network's provider registry) -----------------------
    async def provide(self, sha256: str) -> bool:
        """Record this node as a provider of blob ``sha256``; False while it has no peer (as a DHT
        with nobody to take the record)."""
        self._check_running()
        return self._net.provide(self, sha256)

    async def find_providers(self, sha256: str, limit: int = 20) -> list[str]:
        """Providers of blob ``sha256`` recorded in the network, newest first; [] while this node has no peer."""
        self._check_running()
        return self._net.providers(self, sha256, limit)

    @property
    def max_provided(self) -> int:
        return self._net.max_provided

    # -- metrics ---------------------------------------------------------------
    @property
    def counters(self) -> dict[str, int]:
        return dict(self.counts)
