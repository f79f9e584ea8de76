"""Sans-IO admission control on the executor: bounded queue, per-peer rate limit, replay guard."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Admission", "Admit", "Refuse", "TokenBucket", "ReplayGuard", "MAX_SPEC_LIFETIME_MS"]

MAX_SPEC_LIFETIME_MS = 10 * 60_000
"""Specs claiming to live longer than this are refused (bounds the replay memory)."""


@dataclass(frozen=True)
class Admit:
    queued: bool
    """True when the task waits for a slot, False when a slot is free now."""


@dataclass(frozen=True)
class Refuse:
    reason: str
    """``queue full`` or ``rate limit``."""
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

    def __init__(self, slots: int, queue_cap: int, peer_rate: float = 1000.0, peer_burst: float = 200.0) -> None:
        self.slots = slots
        self.queue_cap = queue_cap
        self.peer_rate = peer_rate
        self.peer_burst = peer_burst
        self.running = 0
        self.queued = 0
        self._buckets: dict[str, TokenBucket] = {}

    def offer(self, peer: str, now_ms: int) -> Admit | Refuse:
        bucket = self._buckets.get(peer)
        if bucket is None:
            bucket = self._buckets[peer] = TokenBucket(self.peer_rate, self.peer_burst, now_ms)
        if self.running + self.queued >= self.slots + self.queue_cap:
            return Refuse("queue full", 50)
        if not bucket.take(now_ms):
            return Refuse("rate limit", bucket.wait_ms())
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


class ReplayGuard:
    """Refuses expired specs and any (author, nonce) seen before its expiry."""

    def __init__(self, max_lifetime_ms: int = MAX_SPEC_LIFETIME_MS) -> None:
        self.max_lifetime_ms = max_lifetime_ms
        self._seen: dict[tuple[bytes, bytes], int] = {}

    def check(self, author: bytes, nonce: bytes, expires_ms: int, now_ms: int) -> str | None:
        """Record the spec and return None if fresh; else the reason to refuse it."""
        if expires_ms <= now_ms:
            return "expired spec"
        if expires_ms - now_ms > self.max_lifetime_ms:
            return "spec lifetime too long"
        if len(nonce) < 8:
            return "nonce too short"
        key = (author, nonce)
        if key in self._seen:
            return "replayed spec"
        self._seen[key] = expires_ms
        return None

    def expire(self, now_ms: int) -> None:
        for k in [k for k, exp in self._seen.items() if exp <= now_ms]:
            del self._seen[k]

    def __len__(self) -> int:
        return len(self._seen)
