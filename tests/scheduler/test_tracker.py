"""The submitter's task state machine, driven by a fake clock."""

from __future__ import annotations

import pytest

from edgenode.errors import LocalError
from edgenode.reasons import Reason
from edgenode.scheduler import (
    Assign,
    Done,
    Failed,
    TaskState,
    TaskTracker,
)


def tracker(cands: list[str], k: int = 1, attempt_ms: int = 100, expires: int = 1000) -> TaskTracker:
    return TaskTracker("t", list(cands), expires, attempt_ms, k)


def test_happy_path() -> None:
    t = tracker(["a", "b"])
    assert t.start(0) == [Assign("a", 1, 100)]
    assert t.on_result("a", "ok:h", 5) == [Done("ok:h", ("a",), ())]
    assert t.state is TaskState.DONE and t.next_deadline() is None
    assert t.on_result("a", "ok:h", 6) == []


def test_reassign_on_silence_then_late_answer_ignored() -> None:
    t = tracker(["a", "b"])
    t.start(0)
    assert t.next_deadline() == 100
    assert t.on_timer(99) == []
    assert t.on_timer(100) == [Assign("b", 2, 200)]
    assert t.on_result("a", "ok:h", 150) == []  # silent executor no longer counts
    assert t.on_result("b", "ok:h", 160) == [Done("ok:h", ("b",), ())]
    assert t.reasons == ["a: silent"]


def test_busy_moves_on_and_runs_out() -> None:
    t = tracker(["a", "b"])
    t.start(0)
    assert t.on_refused("a", Reason.QUEUE_FULL, "", 1) == [Assign("b", 2, 101)]
    out = t.on_refused("b", Reason.EXPIRED, "spec expired", 2)
    assert out == [Failed(Reason.NO_EXECUTOR, "a: queue_full; b: expired (spec expired)")]
    assert t.codes == [Reason.QUEUE_FULL, Reason.EXPIRED]
    assert t.state is TaskState.FAILED


def test_no_candidates_fails_at_start() -> None:
    assert tracker([]).start(0) == [Failed(Reason.NO_EXECUTOR, "")]


def test_deadline_fails_with_timeout() -> None:
    t = tracker(["a", "b", "c"], attempt_ms=600, expires=1000)
    t.start(0)
    t.on_timer(600)
    assert t.on_timer(1000) == [Failed(Reason.TIMEOUT, "a: silent")]


def test_redundancy_majority_with_disagreement() -> None:
    t = tracker(["a", "b", "c", "d"], k=3)
    assert [x.peer for x in t.start(0) if isinstance(x, Assign)] == ["a", "b", "c"]
    assert t.on_result("a", "ok:x", 1) == []
    assert t.on_result("b", "ok:y", 2) == []
    done = t.on_result("c", "ok:x", 3)
    assert done == [Done("ok:x", ("a", "c"), (("b", "ok:y"),))]


def test_redundancy_replaces_failed_replica() -> None:
    t = tracker(["a", "b", "c"], k=2)
    t.start(0)
    assert t.on_result("a", "ok:x", 1) == []
    assert t.on_refused("b", Reason.RATE_LIMIT, "", 2) == [Assign("c", 3, 102)]
    assert t.on_result("c", "ok:x", 3) == [Done("ok:x", ("a", "c"), ())]


def test_no_majority_when_candidates_run_out() -> None:
    t = tracker(["a", "b"], k=2)
    t.start(0)
    t.on_result("a", "ok:x", 1)
    assert t.on_result("b", "ok:y", 2) == [Failed(Reason.NO_MAJORITY, "")]


def test_more_candidates_later() -> None:
    t2 = TaskTracker("t", ["a"], 1000, 100)
    t2.start(0)
    t2.on_timer(100)
    assert t2.state is TaskState.FAILED
    t3 = TaskTracker("t", ["a"], 1000, 100)
    t3.start(0)
    assert t3.add_candidates(["a", "b"], 1) == []  # a already tried; one outstanding is enough
    assert t3.on_refused("a", Reason.QUEUE_FULL, "", 2) == [Assign("b", 2, 102)]


def test_bad_redundancy_and_double_start() -> None:
    with pytest.raises(LocalError):
        tracker(["a"], k=0)
    t = tracker(["a"])
    t.start(0)
    with pytest.raises(LocalError):
        t.start(0)
