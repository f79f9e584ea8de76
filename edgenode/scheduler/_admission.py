"""Sans-IO admission control on the executor: bounded queue, per-peer rate limit, replay guard."""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from ..reasons import Reason

__all__ = [
    "Admission",
    "Admit",
    "Refuse",
    "TokenBucket",
    "ReplayGuard",
    "MAX_SPEC_LIFETIME_MS",
    "MAX_NONCE_BYTES",
    "MIN_NONCE_BYTES",
    "DEFAULT_REPLAY_ENTRIES",
    "DEFAULT_PEER_BUCKETS",
]

MAX_SPEC_LIFETIME_MS = 10 * 60_000
"""Specs claiming to live longer than this are refused (bounds the replay memory)."""
MIN_NONCE_BYTES = 8
MAX_NONCE_BYTES = 64
"""Longer nonces are refused: the replay table keeps every admitted nonce until it expires."""
DEFAULT_REPLAY_ENTRIES = 50_000
"""Admitted specs remembered at once (about 15 MB); past it new specs get busy until some expire."""
DEFAULT_PEER_BUCKETS = 4096
"""Per-submitter rate-limit buckets kept (least recently used dropped first)."""


@dataclass(frozen=True)
class Admit:
    queued: bool
    """True when the task waits for a slot, False when a slot is free now."""


@dataclass(frozen=True)
class Refuse:
    reason: Reason
    """:attr:`Reason.QUEUE_FULL` or :attr:`Reason.RATE_LIMIT`."""
    retry_after_ms: int


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved.

    The one token bucket of the node: admission control here and the zero-trust
    layer's per-peer, per-class limits (:class:`edgenode.security.AbuseGuard`).
    """

    def __init__(self, rate: float, burst: float, now_ms: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.t_ms = now_ms

    def take(self, now_ms: float, cost: float = 1.0) -> bool:
        """Refill for the time since the last call, then take ``cost`` tokens if there are enough."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now_ms - self.t_ms) * self.rate / 1000.0)
        self.t_ms = max(self.t_ms, now_ms)
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def wait_ms(self) -> int:
        return max(1, int((1.0 - self.tokens) * 1000.0 / self.rate) + 1) if self.rate > 0 else 60_000


class Admission:
    """Counts running and queued tasks; answers admit or refuse (never drops silently).

    Call :meth:`offer` on arrival; on :class:`Admit`, call :meth:`started` when the
    task gets a slot and :meth:`finished` when it ends.
    """

    def __init__(
        self,
        slots: int,
        queue_cap: int,
        peer_rate: float = 1000.0,
        peer_burst: float = 200.0,
        max_peers: int = DEFAULT_PEER_BUCKETS,
    ) -> None:
        self.slots = slots
        self.queue_cap = queue_cap
        self.peer_rate = peer_rate
        self.peer_burst = peer_burst
        self.max_peers = max_peers
        """Buckets kept; the least recently used goes first (an idle bucket is full, so a fresh one is the same)."""
        self.running = 0
        self.queued = 0
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def offer(self, peer: str, now_ms: float) -> Admit | Refuse:
        """``now_ms``: a monotonic reading (the per-peer rate is a duration)."""
        bucket = self._buckets.get(peer)
        if bucket is None:
            bucket = self._buckets[peer] = TokenBucket(self.peer_rate, self.peer_burst, now_ms)
            while len(self._buckets) > self.max_peers:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(peer)
        if self.running + self.queued >= self.slots + self.queue_cap:
            return Refuse(Reason.QUEUE_FULL, 50)
        if not bucket.take(now_ms):
            return Refuse(Reason.RATE_LIMIT, bucket.wait_ms())
        waits = self.running + self.queued >= self.slots
        self.queued += 1
        return Admit(queued=waits)

    def started(self) -> None:
        self.queued -= 1
        self.running += 1

    def finished(self) -> None:
        self.running -= 1

    def abandoned(self) -> None:
        """A queued task left before getting a slot."""
        self.queued -= 1

    @property
    def free_slots(self) -> int:
        return max(0, self.slots - self.running)

    @property
    def queue_len(self) -> int:
        return self.queued

    @property
    def tracked_peers(self) -> int:
        """Rate-limit buckets held (at most :attr:`max_peers`)."""
        return len(self._buckets)


class ReplayGuard:
    """Refuses expired specs, oversized nonces and any (author, nonce) admitted before its expiry.

    Sans-IO: :meth:`check` only answers, :meth:`record` remembers an admitted spec
    until its expiry, and :meth:`expire` (due at :meth:`next_deadline`) forgets what
    expired; :meth:`check` and :meth:`record` run it themselves when it is due, so
    the table never outgrows the specs live at ``now``.  At most ``max_entries`` are
    held: past that :meth:`check` answers :attr:`Reason.REPLAY_FULL` (the caller says busy)
    rather than forget a live entry, which would reopen a replay.
    """

    def __init__(
        self,
        max_lifetime_ms: int = MAX_SPEC_LIFETIME_MS,
        max_nonce_bytes: int = MAX_NONCE_BYTES,
        max_entries: int = DEFAULT_REPLAY_ENTRIES,
    ) -> None:
        self.max_lifetime_ms = max_lifetime_ms
        self.max_nonce_bytes = max_nonce_bytes
        self.max_entries = max_entries
        self._seen: dict[bytes, int] = {}
        self._heap: list[tuple[int, bytes]] = []

    def check(self, author: bytes, nonce: bytes, expires_ms: int, now_ms: int) -> Reason | None:
        """None if the spec may be admitted (then call :meth:`record`); else why to refuse it
        (:attr:`Reason.REPLAY_FULL` is a busy answer: the spec may be admitted later)."""
        self.expire(now_ms)
        if expires_ms <= now_ms:
            return Reason.EXPIRED
        if expires_ms - now_ms > self.max_lifetime_ms:
            return Reason.LIFETIME_TOO_LONG
        if not MIN_NONCE_BYTES <= len(nonce) <= self.max_nonce_bytes:
            return Reason.BAD_NONCE
        if _key(author, nonce) in self._seen:
            return Reason.REPLAYED
        if len(self._seen) >= self.max_entries:
            return Reason.REPLAY_FULL
        return None

    def record(self, author: bytes, nonce: bytes, expires_ms: int) -> None:
        """Remember an admitted spec until ``expires_ms``."""
        key = _key(author, nonce)
        if key not in self._seen:
            self._seen[key] = expires_ms
            heapq.heappush(self._heap, (expires_ms, key))

    def restore(self, entries: Iterable[tuple[bytes, bytes, int]], now_ms: int) -> int:
        """Remember ``(author, nonce, expires_ms)`` entries kept across a restart; return how many."""
        n = 0
        for author, nonce, expires_ms in entries:
            if expires_ms > now_ms and len(self._seen) < self.max_entries:
                self.record(author, nonce, expires_ms)
                n += 1
        return n

    def next_deadline(self) -> int | None:
        """When the oldest entry expires (ms), or None when the table is empty."""
        return self._heap[0][0] if self._heap else None

    def expire(self, now_ms: int) -> int:
        """Forget the specs expired at ``now_ms``; return how many."""
        n = 0
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            _exp, key = heapq.heappop(heap)
            del self._seen[key]
            n += 1
        return n

    def __len__(self) -> int:
        return len(self._seen)


def _key(author: bytes, nonce: bytes) -> bytes:
    return author + nonce  # authors are 32-byte keys, so the split is unambiguous
