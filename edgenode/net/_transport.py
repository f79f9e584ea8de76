"""The one transport interface that node code speaks through.

Two implementations: :mod:`edgenode.net.memnet` (in-process, simulated links)
and :mod:`edgenode.net.p2p` (py-libp2p in its own trio thread).  Both run the
contract suite in ``tests/net/test_contract.py``.  No libp2p type crosses
this interface: peers are peer-id strings, payloads are ``bytes``.

Gossip is best effort.  Anything that must arrive is acknowledged at the
application level (use :meth:`Transport.request`).

Threads: everything the caller awaits or iterates (request handlers, subscriptions,
peer-event streams) runs on the caller's asyncio loop; only a topic validator may run
on another thread (see :class:`Transport`).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from ..errors import RemoteError
from ._errors import BlobMismatch, NetError

__all__ = [
    "Transport",
    "GossipMessage",
    "Subscription",
    "PeerEvent",
    "PeerEventKind",
    "Handler",
    "Validator",
    "BlobStore",
    "MemoryBlobStore",
    "BLOB_PROTOCOL",
    "DIRECT_FIRST_S",
    "sha256_hex",
    "blob_handler",
    "follow_gossip",
    "failure_reason",
    "REASON_NO_HANDLER",
    "REASON_BAD_REQUEST",
    "REASON_HANDLER_FAILED",
    "REASON_HANDLER_TIMEOUT",
    "REASON_TOO_LARGE",
    "COUNTERS",
    "DROP_COUNTERS",
]

COUNTERS: dict[str, str] = {
    # gossip
    "gossip_published": "messages this node published",
    "gossip_delivered": "messages handed to a local subscription",
    "gossip_dropped_invalid": "messages a validator refused",
    "gossip_dropped_slow_subscriber": "messages not handed to a subscription whose queue was full",
    # requests this node sent
    "requests_sent": "requests sent",
    "requests_timed_out": "requests sent that got no answer in time (RequestTimeout)",
    "requests_errors": "requests sent that failed otherwise (unreachable, refused, a failure answer)",
    # requests this node served
    "requests_served": "requests handed to a handler",
    "requests_failed": "served requests whose handler raised (answered handler_failed)",
    "requests_unhandled": "requests for a protocol nothing serves (answered no_handler)",
    "requests_too_large": "requests over their protocol's size limit (answered bad_request)",
    "requests_handler_timed_out": "served requests whose handler ran out of time",
    # peers
    "peer_events_dropped": "peer events not queued for a slow reader",
}
"""The counters every transport reports, always present (from zero), each meaning the same on
memnet and on libp2p.  A transport may report more, named after what only it has
(memnet: ``gossip_lost``, ``requests_lost``... on simulated links; libp2p: ``dials``,
``channels_opened``...); docs/net.md lists them."""

DROP_COUNTERS = frozenset({
    "gossip_dropped_invalid", "gossip_dropped_slow_subscriber", "requests_timed_out", "requests_errors",
    "requests_failed", "requests_handler_timed_out", "peer_events_dropped",
    # memnet's simulated links
    "gossip_lost", "requests_lost", "gossip_dropped_crashed",
})
"""The counters that count traffic lost, refused or failed: what metrics and reports call drops."""

BLOB_PROTOCOL = "/edgenode/blob/1"
"""Request protocol that serves blobs by sha256 (request: the sha256 hex digest as ASCII)."""

DIRECT_FIRST_S = 3.0
"""Seconds a peer's direct addresses get, together, when a relayed address follows: behind a NAT
they are private ones that swallow the dial (the transport's own dials and the submitter's)."""

Handler = Callable[[str, bytes], Awaitable[bytes]]
"""A request handler: ``await handler(sender_peer_id, request_bytes) -> response_bytes``.
Raising makes the requester see :class:`RemoteFailure`; it never kills the transport.
It runs as a task on the asyncio loop of the caller that started the transport."""

Validator = Callable[[str, bytes], bool]
"""A topic validator: ``validator(sender_peer_id, data) -> accept``.  Runs before
delivery and before forwarding; rejected messages are dropped and counted.
It may be called from another thread than the caller's loop (the libp2p network thread),
so it must be thread-safe and must not block: a pure decoder is ideal."""


REASON_NO_HANDLER = "no_handler"
REASON_BAD_REQUEST = "bad_request"
REASON_HANDLER_FAILED = "handler_failed"
REASON_HANDLER_TIMEOUT = "handler_timeout"
REASON_TOO_LARGE = "response_too_large"
"""Reason codes a requester sees in ``RemoteFailure`` (the same over every transport); the
handler's exception text never leaves the serving node."""


def failure_reason(exc: BaseException) -> str:
    """The reason code sent to the requester for a handler that raised ``exc`` (the detail stays in our log)."""
    return REASON_BAD_REQUEST if isinstance(exc, RemoteError) else REASON_HANDLER_FAILED


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class GossipMessage:
    """One gossip message delivered to a subscriber."""

    topic: str
    sender: str
    """Peer id of the message's origin (not the peer that forwarded it)."""
    data: bytes


class Subscription(Protocol):
    """What :meth:`Transport.subscribe` returns: an async iterator of one topic's messages,
    iterated on the caller's asyncio loop, that ``aclose()`` unsubscribes and ends (an
    iteration waiting for the next message then stops)."""

    def __aiter__(self) -> Subscription: ...

    async def __anext__(self) -> GossipMessage: ...

    async def aclose(self) -> None:
        """Unsubscribe: what is buffered is dropped and the iteration ends."""


async def follow_gossip(
    sub: Subscription,
    handle: Callable[[GossipMessage], Awaitable[None]],
    logger: logging.Logger,
    what: str = "gossip",
) -> None:
    """Hand every message of ``sub`` to ``handle`` until the stream ends or this task is cancelled.

    A message whose handling raises :class:`~edgenode.errors.RemoteError` (the peer's fault) is
    logged at debug level as ``bad <what>`` and dropped. ``sub`` is closed (unsubscribed) at the end.
    """
    try:
        async for msg in sub:
            try:
                await handle(msg)
            except RemoteError as exc:
                logger.debug(f"bad {what}", extra={"sender": msg.sender, "error": str(exc)})
    finally:
        with contextlib.suppress(NetError):
            await sub.aclose()


class PeerEventKind(Enum):
    JOIN = "join"
    LEAVE = "leave"


@dataclass(frozen=True)
class PeerEvent:
    kind: PeerEventKind
    peer: str


class BlobStore(abc.ABC):
    """Where a transport finds the blobs it serves.  Keys are sha256 hex digests."""

    @abc.abstractmethod
    def get(self, digest: str) -> bytes | None: ...

    @abc.abstractmethod
    def put(self, data: bytes) -> str: ...


class MemoryBlobStore(BlobStore):
    """A dict of blobs."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    def get(self, digest: str) -> bytes | None:
        return self._blobs.get(digest)

    def put(self, data: bytes) -> str:
        digest = sha256_hex(data)
        self._blobs[digest] = bytes(data)
        return digest

    def discard(self, digest: str) -> None:
        """Stop serving ``digest`` (no error when it is not here)."""
        self._blobs.pop(digest, None)


def blob_handler(store: BlobStore) -> Handler:
    """The :data:`BLOB_PROTOCOL` handler: the request is a sha256 hex digest, the response its blob."""

    async def handler(_sender: str, req: bytes) -> bytes:
        digest = req.decode("ascii", "replace")
        blob = store.get(digest)
        if blob is None:
            raise KeyError(f"no blob {digest}")
        return blob

    return handler


class Transport(abc.ABC):
    """Asyncio-facing peer-to-peer transport.

    Lifecycle: construct, ``await start()``, use, ``await stop()``.  Every
    method that waits on the network takes or has a bounded timeout.

    Threads: call it from one asyncio loop (the one it was started on).  Request
    handlers run as tasks on that loop, and subscriptions and peer-event streams are
    iterated on it, so they may touch the caller's state freely.  A validator is the one
    exception: it may be called from another thread (the libp2p network thread), so it
    must be thread-safe and non-blocking; share nothing mutable with the loop's code
    without a lock.
    """

    # -- lifecycle and identity ------------------------------------------------
    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @property
    @abc.abstractmethod
    def peer_id(self) -> str: ...

    @property
    @abc.abstractmethod
    def listen_addrs(self) -> list[str]:
        """Addresses others can dial, each ending in ``/p2p/<peer_id>``."""

    # -- peers -----------------------------------------------------------------
    @abc.abstractmethod
    async def connect(self, addr: str, timeout: float = 10.0) -> str:
        """Dial ``addr`` (a multiaddr with ``/p2p/<id>``); return the peer id."""

    @abc.abstractmethod
    def peers(self) -> list[str]:
        """Peer ids currently connected."""

    async def disconnect(self, peer: str) -> None:
        """Close the connection to ``peer`` (both sides see LEAVE); nothing if not connected.

        Used to drop peers refused by the zero-trust layer.  Implementations that
        cannot close connections raise :class:`NetError`.
        """
        raise NetError(f"{type(self).__name__} cannot close connections")

    async def find_peer(self, peer: str) -> list[str]:
        """Addresses of ``peer`` from peer routing (libp2p: the Kademlia DHT); [] where there is none."""
        return []

    async def provide(self, sha256: str) -> bool:
        """Announce through content routing (libp2p: the DHT) that this node serves blob
        ``sha256``; False where there is none or no peer took the record."""
        return False

    async def find_providers(self, sha256: str, limit: int = 20) -> list[str]:
        """Peers that content routing names as serving blob ``sha256``; [] where there is none."""
        return []

    @property
    def max_provided(self) -> int:
        """Blobs content routing keeps announced for this node at most (libp2p: ``dht_max_provided``;
        older announcements are not renewed); 0 where there is no content routing."""
        return 0

    async def connection_kinds(self) -> dict[str, str]:
        """``peer -> "direct" | "relayed" | "holepunched"`` for every connected peer (here: all direct)."""
        return {p: "direct" for p in self.peers()}

    @property
    def reachability(self) -> str:
        """``public``, ``private`` or ``unknown``: whether peers can dial this node (libp2p: AutoNAT)."""
        return "unknown"

    @abc.abstractmethod
    def peer_events(self) -> AsyncIterator[PeerEvent]:
        """Join/leave events from now on (each call gets its own stream), iterated on the caller's loop."""

    # -- gossip ----------------------------------------------------------------
    @abc.abstractmethod
    async def publish(self, topic: str, data: bytes) -> None:
        """Gossip ``data`` on ``topic`` (best effort; the publisher does not receive it)."""

    @abc.abstractmethod
    def subscribe(self, topic: str) -> Subscription:
        """Messages on ``topic`` from now on, iterated on the caller's loop; ``aclose()``
        unsubscribes and ends the iteration."""

    @abc.abstractmethod
    def set_validator(self, topic: str, validator: Validator) -> None:
        """Check every message on ``topic`` before delivery and forwarding.

        ``validator`` may be called from another thread than the caller's loop (the libp2p
        network thread): it must be thread-safe and must not block.
        """

    # -- requests --------------------------------------------------------------
    @abc.abstractmethod
    async def request(self, peer: str, protocol: str, data: bytes, timeout: float = 10.0) -> bytes:
        """Send one request and wait for its response.

        Raises RequestTimeout, Unreachable, or RemoteFailure (the peer's handler failed or is missing).
        """

    @abc.abstractmethod
    def serve(self, protocol: str, handler: Handler) -> None:
        """Answer requests on ``protocol`` with ``handler``, run as a task on the caller's loop."""

    # -- metrics ---------------------------------------------------------------
    @property
    @abc.abstractmethod
    def counters(self) -> dict[str, int]:
        """Monotonic counters: messages published/delivered, drops by reason, requests..."""

    # -- blobs (shared logic over request/serve) --------------------------------
    def serve_blobs(self, store: BlobStore) -> None:
        """Serve ``store``'s blobs to peers on :data:`BLOB_PROTOCOL`."""

        self.serve(BLOB_PROTOCOL, blob_handler(store))

    async def fetch_blob(self, peer: str, digest: str, timeout: float = 30.0) -> bytes:
        """Fetch the blob named ``digest`` (sha256 hex) from ``peer``, verified before return."""
        data = await self.request(peer, BLOB_PROTOCOL, digest.encode("ascii"), timeout=timeout)
        got = sha256_hex(data)
        if got != digest:
            raise BlobMismatch(f"peer {peer} sent a blob hashing to {got}, not {digest}")
        return data

    async def fetch_blob_anywhere(self, digest: str, first: str, timeout: float = 30.0) -> bytes:
        """The blob ``digest`` from ``first``, else from any provider content routing finds
        (each verified; ``timeout`` bounds the whole search).  Raises the first peer's error
        when nobody else has it."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        try:
            return await self.fetch_blob(first, digest, timeout=timeout)
        except NetError as exc:
            err = exc
        for peer in await self.find_providers(digest):  # bounded by the DHT's own query timeout
            left = end - loop.time()
            if left <= 0:
                break
            if peer in (first, self.peer_id):
                continue
            with contextlib.suppress(NetError):
                return await self.fetch_blob(peer, digest, timeout=left)
        raise err
