"""Sans-IO submitter-side task state machine.

One :class:`TaskTracker` per task.  It hands out :class:`Assign` actions to
ranked candidates, reassigns on a busy answer, a failure, or silence past the
attempt deadline, and with redundancy ``k`` accepts the result reported by a
majority (``k // 2 + 1``) of executors, recording the ones that disagreed.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import LocalError
from ..reasons import Reason

__all__ = ["TaskTracker", "TaskState", "Assign", "Done", "Failed", "Action"]


class TaskState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class Assign:
    """Send the task to ``peer`` (attempt number ``attempt``); expect an answer by ``deadline_ms``."""

    peer: str
    attempt: int
    deadline_ms: int


@dataclass(frozen=True)
class Done:
    """A result the majority agreed on."""

    result: str
    """The agreed result key (``status:output_hash``)."""
    agreeing: tuple[str, ...]
    disagreeing: tuple[tuple[str, str], ...]
    """(peer, its result key) for each executor that reported something else."""


@dataclass(frozen=True)
class Failed:
    reason: Reason
    """One of :data:`edgenode.reasons.VERDICT` (no executor, timeout, no majority)."""
    detail: str = ""


Action = Assign | Done | Failed


@dataclass
class _Attempt:
    peer: str
    attempt: int
    deadline_ms: int


@dataclass
class TaskTracker:
    task_id: str
    candidates: list[str]
    """Ranked executors still untried."""
    expires_ms: int
    """After this the task fails with :attr:`Reason.TIMEOUT`."""
    attempt_ms: int
    """How long one executor gets before it counts as silent."""
    redundancy: int = 1
    state: TaskState = TaskState.PENDING
    outstanding: dict[str, _Attempt] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)
    """peer -> result key for every answer received."""
    tried: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    """Why each executor given up on was given up on, for people: ``peer: code (detail)``."""
    codes: list[Reason] = field(default_factory=list)
    """The same, as codes (what the submitter decides on)."""
    _attempts: int = 0

    def __post_init__(self) -> None:
        if self.redundancy < 1:
            raise LocalError("redundancy must be at least 1")

    @property
    def majority(self) -> int:
        return self.redundancy // 2 + 1

    @property
    def finished(self) -> bool:
        return self.state in (TaskState.DONE, TaskState.FAILED)

    def start(self, now_ms: int) -> list[Action]:
        if self.state is not TaskState.PENDING:
            raise LocalError("task already started")
        self.state = TaskState.RUNNING
        return self._fill(now_ms)

    def add_candidates(self, peers: Sequence[str], now_ms: int) -> list[Action]:
        """More executors became known (e.g. bids); assign if the task is short of them."""
        for p in peers:
            if p not in self.candidates and p not in self.tried:
                self.candidates.append(p)
        if self.state is not TaskState.RUNNING:
            return []
        return self._fill(now_ms)

    def on_result(self, peer: str, result: str, now_ms: int) -> list[Action]:
        """A verified result (``status:output_hash``) from ``peer``."""
        if self.finished or self.outstanding.pop(peer, None) is None:
            return []
        self.results[peer] = result
        agree = [p for p, r in self.results.items() if r == result]
        if len(agree) >= self.majority:
            self.state = TaskState.DONE
            others = tuple((p, r) for p, r in self.results.items() if r != result)
            self.outstanding.clear()
            return [Done(result, tuple(agree), others)]
        return self._fill(now_ms)

    def on_refused(self, peer: str, code: Reason, detail: str, now_ms: int) -> list[Action]:
        """``peer`` answered busy, rejected the spec, failed, or sent an invalid receipt."""
        if self.finished or self.outstanding.pop(peer, None) is None:
            return []
        self.codes.append(code)
        self.reasons.append(f"{peer}: {code}" + (f" ({detail})" if detail else ""))
        return self._fill(now_ms)

    def on_timer(self, now_ms: int) -> list[Action]:
        if self.finished:
            return []
        if now_ms >= self.expires_ms:
            self.state = TaskState.FAILED
            self.outstanding.clear()
            return [Failed(Reason.TIMEOUT, "; ".join(self.reasons))]
        silent = [p for p, a in self.outstanding.items() if now_ms >= a.deadline_ms]
        for p in silent:
            del self.outstanding[p]
            self.codes.append(Reason.SILENT)
            self.reasons.append(f"{p}: {Reason.SILENT}")
        return self._fill(now_ms) if silent else []

    def next_deadline(self) -> int | None:
        if self.finished:
            return None
        return min([self.expires_ms, *(a.deadline_ms for a in self.outstanding.values())])

    def _best_count(self) -> int:
        counts: dict[str, int] = {}
        for r in self.results.values():
            counts[r] = counts.get(r, 0) + 1
        return max(counts.values(), default=0)

    def _fill(self, now_ms: int) -> list[Action]:
        # executors still needed so that a majority can be reached
        need = self.majority - self._best_count() - len(self.outstanding)
        if len(self.results) == 0:
            need = self.redundancy - len(self.outstanding)
        out: list[Action] = []
        while need > 0 and self.candidates:
            peer = self.candidates.pop(0)
            self.tried.append(peer)
            self._attempts += 1
            a = _Attempt(peer, self._attempts, min(now_ms + self.attempt_ms, self.expires_ms))
            self.outstanding[peer] = a
            out.append(Assign(peer, a.attempt, a.deadline_ms))
            need -= 1
        if not self.outstanding:
            self.state = TaskState.FAILED
            reason = Reason.NO_MAJORITY if self.results else Reason.NO_EXECUTOR
            out.append(Failed(reason, "; ".join(self.reasons)))
        return out
