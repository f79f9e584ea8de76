"""Abuse limits: per-peer token buckets and a penalty score, sans-IO.

Every call takes ``now`` (seconds, any monotonic origin).  A peer that sends
invalid signatures, forged receipts or equivocating ledger entries earns
penalty points; past the threshold it is banned for a while and the caller
should disconnect it and gossip the evidence.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..scheduler import TokenBucket

__all__ = ["RateSpec", "AbuseConfig", "AbuseGuard", "PENALTIES"]

PENALTIES: dict[str, float] = {
    "invalid_signature": 10.0,
    "malformed": 5.0,
    "forged_receipt": 50.0,
    "equivocation": 100.0,
    "replayed": 10.0,
    "bad_ciphertext": 10.0,
    "rate_limited": 1.0,
}
"""Points a peer earns per offence."""


@dataclass(frozen=True)
class RateSpec:
    """A token bucket: ``rate`` tokens per second, at most ``burst`` saved up."""

    rate: float
    burst: float


@dataclass(frozen=True)
class AbuseConfig:
    """Limits per peer and the penalty policy."""

    limits: dict[str, RateSpec] = field(
        default_factory=lambda: {
            "task": RateSpec(200.0, 400.0),
            "gossip": RateSpec(500.0, 1000.0),
            "blob": RateSpec(50.0, 100.0),
            "request": RateSpec(200.0, 400.0),
        }
    )
    """Bucket per traffic class."""
    ban_threshold: float = 100.0
    """Penalty score at which a peer is banned."""
    ban_s: float = 600.0
    """How long a ban lasts."""
    decay_per_s: float = 0.5
    """Penalty points forgiven per second of good behaviour."""


class AbuseGuard:
    """Per-peer rate limits and penalties for one node."""

    def __init__(self, config: AbuseConfig | None = None) -> None:
        self.config = config or AbuseConfig()
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._score: dict[str, tuple[float, float]] = {}
        self._banned_until: dict[str, float] = {}
        self.counters: Counter[str] = Counter()
        """Refusals by reason and offences by kind."""

    def allow(self, peer: str, kind: str, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens from ``peer``'s ``kind`` bucket; False (and counted) if banned or empty."""
        if self.is_banned(peer, now):
            self.counters["refused_penalised"] += 1
            return False
        spec = self.config.limits.get(kind)
        if spec is None:
            return True
        bucket = self._buckets.get((peer, kind))
        if bucket is None:
            bucket = self._buckets[(peer, kind)] = TokenBucket(spec.rate, spec.burst, now * 1000.0)
        if not bucket.take(now * 1000.0, cost):
            self.counters[f"rate_limited_{kind}"] += 1
            self.penalise(peer, "rate_limited", now)
            return False
        return True

    def penalise(self, peer: str, offence: str, now: float) -> bool:
        """Add the offence's points; True when this pushed the peer into a ban."""
        self.counters[f"offence_{offence}"] += 1
        score = self.score(peer, now) + PENALTIES.get(offence, 1.0)
        self._score[peer] = (score, now)
        if score >= self.config.ban_threshold and not self.is_banned(peer, now):
            self._banned_until[peer] = now + self.config.ban_s
            self.counters["banned"] += 1
            return True
        return False

    def score(self, peer: str, now: float) -> float:
        score, last = self._score.get(peer, (0.0, now))
        return max(0.0, score - (now - last) * self.config.decay_per_s)

    def is_banned(self, peer: str, now: float) -> bool:
        until = self._banned_until.get(peer)
        if until is None:
            return False
        if now >= until:
            del self._banned_until[peer]
            self._score.pop(peer, None)
            return False
        return True

    def banned(self, now: float) -> list[str]:
        return [p for p in list(self._banned_until) if self.is_banned(p, now)]
