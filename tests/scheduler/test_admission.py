"""Admission control and replay protection on the executor."""

from __future__ import annotations

from edgenode.reasons import Reason
from edgenode.scheduler import Admission, Admit, Refuse, ReplayGuard, TokenBucket


def test_bounded_queue_answers_busy() -> None:
    a = Admission(slots=2, queue_cap=1, peer_rate=1e6, peer_burst=1e6)
    verdicts = [a.offer("p", 0) for _ in range(4)]
    assert verdicts[:3] == [Admit(False), Admit(False), Admit(True)]
    assert isinstance(verdicts[3], Refuse) and verdicts[3].reason == Reason.QUEUE_FULL
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
    assert isinstance(r, Refuse) and r.reason == Reason.RATE_LIMIT and r.retry_after_ms > 0
    assert isinstance(a.offer("other", 0), Admit)
    assert isinstance(a.offer("greedy", 100), Admit)  # one token back after 100 ms at 10/s


def test_token_bucket_caps_at_burst() -> None:
    b = TokenBucket(rate=1000.0, burst=3.0, now_ms=0)
    took = [b.take(10_000) for _ in range(5)]
    assert took == [True, True, True, False, False]


def test_replay_guard() -> None:
    g = ReplayGuard(max_lifetime_ms=10_000)
    assert g.check(b"k", b"n" * 16, expires_ms=5000, now_ms=0) is None
    g.record(b"k", b"n" * 16, expires_ms=5000)
    assert g.next_deadline() == 5000
    assert g.check(b"k", b"n" * 16, expires_ms=5000, now_ms=1) == Reason.REPLAYED
    assert g.check(b"other", b"n" * 16, expires_ms=5000, now_ms=1) is None
    assert g.check(b"k", b"m" * 16, expires_ms=5000, now_ms=5000) == Reason.EXPIRED
    assert g.check(b"k", b"m" * 16, expires_ms=50_000, now_ms=0) == Reason.LIFETIME_TOO_LONG
    assert g.check(b"k", b"short", expires_ms=5000, now_ms=0) == Reason.BAD_NONCE
    assert len(g) == 0 and g.next_deadline() is None  # the check at 5000 forgot it


def test_replay_guard_caps_nonce_size() -> None:
    g = ReplayGuard(max_lifetime_ms=10_000, max_nonce_bytes=64)
    assert g.check(b"k", b"n" * 64, expires_ms=5000, now_ms=0) is None
    assert g.check(b"k", b"n" * 65, expires_ms=5000, now_ms=0) == Reason.BAD_NONCE
    assert g.check(b"k", b"n" * (8 << 20), expires_ms=5000, now_ms=0) == Reason.BAD_NONCE


def test_replay_guard_checks_without_recording() -> None:
    g = ReplayGuard()
    for i in range(100):
        assert g.check(b"k" * 32, i.to_bytes(16, "big"), expires_ms=5000, now_ms=0) is None
    assert len(g) == 0  # only record() remembers: a refused spec costs nothing


def test_replay_guard_forgets_on_its_own_as_time_passes() -> None:
    g = ReplayGuard(max_lifetime_ms=10_000)
    for i in range(1000):
        now = i * 10
        assert g.check(b"k" * 32, i.to_bytes(16, "big"), expires_ms=now + 100, now_ms=now) is None
        g.record(b"k" * 32, i.to_bytes(16, "big"), expires_ms=now + 100)
    # check() expired what was due: only the specs of the last 100 ms are held
    assert len(g) <= 11


def test_replay_guard_is_bounded_and_never_forgets_a_live_entry() -> None:
    g = ReplayGuard(max_lifetime_ms=10_000, max_entries=3)
    for i in range(3):
        g.record(b"k" * 32, bytes([i]) * 16, expires_ms=1000 + i)
    assert g.check(b"k" * 32, b"x" * 16, expires_ms=5000, now_ms=0) == Reason.REPLAY_FULL
    assert g.check(b"k" * 32, b"\x00" * 16, expires_ms=5000, now_ms=0) == Reason.REPLAYED
    assert len(g) == 3
    assert g.check(b"k" * 32, b"x" * 16, expires_ms=5000, now_ms=1000) is None  # the first expired


def test_replay_guard_restores_only_live_entries() -> None:
    g = ReplayGuard(max_lifetime_ms=10_000)
    n = g.restore([(b"k" * 32, b"a" * 16, 500), (b"k" * 32, b"b" * 16, 2000)], now_ms=1000)
    assert n == 1
    assert g.check(b"k" * 32, b"b" * 16, expires_ms=2000, now_ms=1000) == Reason.REPLAYED
    assert g.check(b"k" * 32, b"a" * 16, expires_ms=2000, now_ms=1000) is None


def test_admission_keeps_a_bounded_number_of_peer_buckets() -> None:
    a = Admission(slots=1_000_000, queue_cap=0, peer_rate=1.0, peer_burst=1.0, max_peers=100)
    for i in range(10_000):
        assert isinstance(a.offer(f"throwaway-{i}", 0), Admit)
    assert a.tracked_peers == 100
    # a recent peer keeps its (empty) bucket: its limit still holds
    refused = a.offer("throwaway-9999", 0)
    assert isinstance(refused, Refuse) and refused.reason == Reason.RATE_LIMIT
