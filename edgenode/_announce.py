"""Announcing the blobs a node serves through content routing (libp2p: DHT provider records).

:class:`AnnounceQueue` is the sans-IO core: which digest to announce next and when, given
the current time; duplicates collapse, the queue is bounded, failures come back after a
backoff, and announcements are paced (a DHT peer accepts only so many ADD_PROVIDER
messages a window from one node).  :class:`BlobAnnouncer` drives it over
:meth:`Transport.provide <edgenode.net.Transport.provide>` as one background task of the
node, so that storing a blob never waits on the network.

A digest announced once is not announced again in this process: the DHT renews its own
records (py-libp2p republishes every 22 h) until ``dht_max_provided`` newer ones push it out.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import EdgenodeError
from .net import NetError, Transport

__all__ = ["AnnounceQueue", "BlobAnnouncer", "RETRY_S", "MAX_RETRY_S"]

log = logging.getLogger("edgenode.announce")

RETRY_S = 5.0
"""Seconds before a failed announcement is tried again (doubling with each failure)."""
MAX_RETRY_S = 600.0
"""Longest wait between two tries of one announcement."""


@dataclass
class _Pending:
    due: float
    failures: int = 0


class AnnounceQueue:
    """What to announce, and when (sans-IO: every method takes the current monotonic time).

    ``capacity`` bounds both the digests waiting and those remembered as announced (past it the
    oldest go: a waiting one is dropped and counted, an announced one may be announced again).
    The newest digest offered goes first, so a module just fetched does not wait behind a
    backlog; two announcements are at least ``interval`` seconds apart.
    """

    def __init__(
        self, capacity: int, interval: float = 1.0, retry_s: float = RETRY_S, max_retry_s: float = MAX_RETRY_S
    ) -> None:
        if capacity < 0 or interval < 0 or retry_s <= 0 or max_retry_s < retry_s:
            raise ValueError("capacity and interval must be >= 0, 0 < retry_s <= max_retry_s")
        self.capacity = capacity
        self.interval = interval
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self._pending: dict[str, _Pending] = {}
        """Digests waiting, in the order offered (the last offered goes first)."""
        self._done: dict[str, None] = {}
        """Digests announced, oldest first."""
        self._busy: str | None = None
        self._next_at = float("-inf")
        self.counts: Counter[str] = Counter()
        """``offered``, ``duplicate`` (waiting, in flight or announced already), ``dropped`` (the queue
        was full: the oldest waiting one went), ``announced``, ``failed`` (tries that failed)."""

    def __len__(self) -> int:
        """Digests waiting (the one in flight included)."""
        return len(self._pending) + (self._busy is not None)

    @property
    def announced(self) -> list[str]:
        """Digests announced, oldest first (at most ``capacity``)."""
        return list(self._done)

    def offer(self, digest: str, now: float) -> bool:
        """Queue ``digest``; False when it is waiting, in flight or announced already (or capacity is 0)."""
        self.counts["offered"] += 1
        if digest in self._pending or digest in self._done or digest == self._busy or self.capacity == 0:
            self.counts["duplicate"] += 1
            return False
        self._pending[digest] = _Pending(now)
        while len(self) > self.capacity:
            del self._pending[next(iter(self._pending))]
            self.counts["dropped"] += 1
        return digest in self._pending

    def next_deadline(self) -> float | None:
        """When :meth:`take` will next have something (None: nothing waits, or one is in flight)."""
        if self._busy is not None or not self._pending:
            return None
        return max(self._next_at, min(p.due for p in self._pending.values()))

    def take(self, now: float) -> str | None:
        """The digest to announce now (the newest one due), or None; answer it with :meth:`done`."""
        if self._busy is not None or now < self._next_at:
            return None
        for digest in reversed(self._pending):
            if self._pending[digest].due <= now:
                self._busy = digest
                self._next_at = now + self.interval
                return digest
        return None

    def done(self, digest: str, ok: bool, now: float) -> None:
        """The announcement of ``digest`` (from :meth:`take`) succeeded or failed at ``now``."""
        if digest != self._busy:
            return
        self._busy = None
        entry = self._pending.pop(digest, None)
        if entry is None:  # dropped while in flight (only capacity 0 gets here)
            return
        if ok:
            self.counts["announced"] += 1
            self._done[digest] = None
            while len(self._done) > self.capacity:
                del self._done[next(iter(self._done))]
            return
        self.counts["failed"] += 1
        entry.failures += 1
        entry.due = now + min(self.retry_s * 2 ** (entry.failures - 1), self.max_retry_s)
        self._pending = {digest: entry, **self._pending}  # the oldest place: new offers go first


class BlobAnnouncer:
    """Announces blobs through ``transport.provide`` in the background (one task: :meth:`run`).

    :meth:`offer` never waits; :meth:`run` is the node's background task (cancelled at stop,
    with nothing left running).  Sized by the transport's ``max_provided`` (0: the transport has
    no content routing, and nothing is queued).
    """

    def __init__(self, transport: Transport, *, interval: float = 1.0, enabled: bool = True,
                 retry_s: float = RETRY_S, max_retry_s: float = MAX_RETRY_S) -> None:
        self._transport = transport
        self._enabled = enabled
        self._interval = interval
        self._retry = (retry_s, max_retry_s)
        self.queue: AnnounceQueue | None = None
        """Made at :meth:`start` (the transport's bound is known once it runs)."""
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def counts(self) -> dict[str, int]:
        """The queue's counters (:attr:`AnnounceQueue.counts`); empty before :meth:`start`."""
        return {} if self.queue is None else dict(self.queue.counts)

    @property
    def announced(self) -> list[str]:
        return [] if self.queue is None else self.queue.announced

    def start(self, held: Iterable[str]) -> bool:
        """Size the queue and queue ``held`` (most recent first; at most the queue's capacity).
        False when nothing will be announced (off, or no content routing)."""
        cap = self._transport.max_provided if self._enabled else 0
        if cap <= 0:
            return False
        self.queue = AnnounceQueue(cap, self._interval, *self._retry)
        now = asyncio.get_running_loop().time()
        recent = [d for _, d in zip(range(cap), held, strict=False)]
        for digest in reversed(recent):  # the newest offered last: it goes first
            self.queue.offer(digest, now)
        if len(self.queue):
            self._idle.clear()
        return True

    def offer(self, digest: str) -> None:
        """Announce ``digest`` soon (no-op before :meth:`start`, when off, or for a duplicate)."""
        if self.queue is not None and self.queue.offer(digest, asyncio.get_running_loop().time()):
            self._idle.clear()
            self._wake.set()

    async def wait_idle(self) -> None:
        """Return once nothing waits to be announced (failed ones waiting for a retry included)."""
        await self._idle.wait()

    async def run(self) -> None:
        """Announce until cancelled (one announcement at a time)."""
        q = self.queue
        if q is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            digest = q.take(loop.time())
            if digest is None:
                self._wake.clear()
                deadline = q.next_deadline()
                delay = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            ok = False
            try:
                ok = await self._transport.provide(digest)
            except (NetError, EdgenodeError) as exc:  # the network is stopping or failed: retried
                log.debug("announce failed", extra={"digest": digest[:16], "error": str(exc)})
            q.done(digest, ok, loop.time())
            if not len(q):
                self._idle.set()
