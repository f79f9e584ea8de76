"""Abuse limits: per-peer token buckets and a penalty score, sans-IO.

Every call takes ``now`` (seconds, any monotonic origin).  A peer that sends
invalid signatures, forged receipts or equivocating ledger entries earns
penalty points; past the threshold it is banned for a while and the caller
should disconnect it and gossip the evidence.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
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
    max_peers: int = 4096
    """Peers tracked at once (buckets, scores and bans each); the least recently seen are forgotten
    first.  A forgotten bucket is a full one (what an idle peer has anyway) and a forgotten score is
    zero, so a flood of throwaway keys costs a bounded table, not a growing one."""


class AbuseGuard:
    """Per-peer rate limits and penalties for one node."""

    def __init__(self, config: AbuseConfig | None = None) -> None:
        self.config = config or AbuseConfig()
        self._buckets: OrderedDict[tuple[str, str], TokenBucket] = OrderedDict()
        self._score: OrderedDict[str, tuple[float, float]] = OrderedDict()
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
            while len(self._buckets) > self.config.max_peers * max(1, len(self.config.limits)):
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end((peer, kind))
        if not bucket.take(now * 1000.0, cost):
            self.counters[f"rate_limited_{kind}"] += 1
            self.penalise(peer, "rate_limited", now)
            return False
        return True

    def penalise(self, peer: str, offence: str, now: float) -> bool:
        """Add the offence's points; True when this pushed the peer into a ban."""
        self.counters[f"offence_{offence}"] += 1
        score = self.score(peer, now) + PENALTIES.get(offence, 1.0)
        self._score.pop(peer, None)
        self._score[peer] = (score, now)
        while len(self._score) > self.config.max_peers:
            self._score.popitem(last=False)
        if score >= self.config.ban_threshold and not self.is_banned(peer, now):
            self._banned_until[peer] = now + self.config.ban_s
            self.counters["banned"] += 1
            if len(self._banned_until) > self.config.max_peers:
                self._trim_bans(now)
            return True
        return False

    def _trim_bans(self, now: float) -> None:
        """Forget the bans that ended, then those ending soonest, down to ``max_peers``."""
        for p in [p for p, until in self._banned_until.items() if until <= now]:
            del self._banned_until[p]
        extra = len(self._banned_until) - self.config.max_peers
        if extra > 0:
            for p in sorted(self._banned_until, key=self._banned_until.__getitem__)[:extra]:
                del self._banned_until[p]

    def tracked(self) -> tuple[int, int, int]:
        """Entries held: (rate-limit buckets, penalty scores, bans); each bounded by ``max_peers``."""
        return len(self._buckets), len(self._score), len(self._banned_until)

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
