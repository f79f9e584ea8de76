"""Admission control and replay protection on the executor."""

from __future__ import annotations

from edgenode.scheduler import Admission, Admit, Refuse, ReplayGuard, TokenBucket


def test_bounded_queue_answers_busy() -> None:
    a = Admission(slots=2, queue_cap=1, peer_rate=1e6, peer_burst=1e6)
    verdicts = [a.offer("p", 0) for _ in range(4)]
    assert verdicts[:3] == [Admit(False), Admit(False), Admit(True)]
    assert isinstance(verdicts[3], Refuse) and verdicts[3].reason == "queue full"
    a.started()
    a.started()
    assert a.free_slots == 0 and a.queue_len == 1
    a.finished()
    assert isinstance(a.offer("p", 0), Admit)


def test_per_peer_rate_limit_is_per_peer() -> None:
    a = Admission(slots=100, queue_cap=100, peer_rate=10.0, peer_burst=2.0)
    assert isinstance(a.offer("greedy", 0), Admit)
    assert isinstance(a.offer("greedy", 0), Admit)
    r = a.offer("greedy", 0)
    assert isinstance(r, Refuse) and r.reason == "rate limit" and r.retry_after_ms > 0
    assert isinstance(a.offer("other", 0), Admit)
    assert isinstance(a.offer("greedy", 100), Admit)  # one token back after 100 ms at 10/s


def test_token_bucket_caps_at_burst() -> None:
    b = TokenBucket(rate=1000.0, burst=3.0, now_ms=0)
    took = [b.take(10_000) for _ in range(5)]
    assert took == [True, True, True, False, False]


def test_replay_guard() -> None:
    g = ReplayGuard(max_lifetime_ms=10_000)
    assert g.check(b"k", b"n" * 16, expires_ms=5000, now_ms=0) is None
    assert g.check(b"k", b"n" * 16, expires_ms=5000, now_ms=1) == "replayed spec"
    assert g.check(b"other", b"n" * 16, expires_ms=5000, now_ms=1) is None
    assert g.check(b"k", b"m" * 16, expires_ms=5000, now_ms=5000) == "expired spec"
    assert g.check(b"k", b"m" * 16, expires_ms=50_000, now_ms=0) == "spec lifetime too long"
    assert g.check(b"k", b"short", expires_ms=5000, now_ms=0) == "nonce too short"
    g.expire(5000)
    assert len(g) == 0
