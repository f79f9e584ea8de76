"""What a run measures: a sans-IO recorder of events and the figures made from them.

The driver calls the ``on_*`` methods with its own clock's ``now`` (seconds
since the start of the run); :meth:`Recorder.figures` turns the record into the
report's figures.  Nothing here reads a clock or touches the network.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Recorder", "TaskRecord", "Figure", "percentile"]


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; NaN when there are no samples."""
    if not samples:
        return math.nan
    s = sorted(samples)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return float(s[k])


@dataclass
class TaskRecord:
    """The life of one submitted task, as the submitter saw it."""

    task_id: str
    kind: str
    sla: str
    submitted_s: float
    accepted_s: float | None = None
    """When an executor first accepted it (None: never accepted)."""
    done_s: float | None = None
    """When its verified result arrived."""
    status: str = ""
    """Final status: ``ok``, a task failure (``trap``, ``fuel``...), or ``rejected`` / ``timeout`` / ``failed``."""
    executor: str = ""
    attempts: int = 0
    results: int = 0
    """Verified results recorded for this task (must be at most 1)."""


@dataclass(frozen=True)
class Figure:
    """One number of the report."""

    name: str
    value: float
    unit: str
    params: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        value: float | None = None if isinstance(self.value, float) and math.isnan(self.value) else self.value
        return {"name": self.name, "value": value, "unit": self.unit, "params": self.params}


class Recorder:
    """Collects the events of one run."""

    def __init__(self) -> None:
        self.tasks: dict[str, TaskRecord] = {}
        self.gossip_sent: dict[str, tuple[float, int]] = {}
        """message id -> (publish time, receivers expected)."""
        self.gossip_latency_ms: list[float] = []
        self._gossip_seen: set[tuple[str, str]] = set()
        self.gossip_dup = 0
        self.fl_rounds: list[dict[str, Any]] = []
        self.fl_centralized: float | None = None
        self.fl_byzantine_baseline: dict[str, float] = {}
        self.ledgers: dict[str, dict[str, Any]] = {}
        self.fork_proofs = 0
        self.drops: Counter[str] = Counter()
        self.events: list[tuple[float, str]] = []
        self.rerecorded: list[str] = []
        """Tasks whose result is on more honest ledgers than the redundancy asked for: re-executed
        after an answer was lost (a crash, a partition or a lossy link between commit and reply)."""
        self.byzantine: Counter[str] = Counter()
        """What byzantine nodes tried, by behaviour, and what the honest swarm caught."""
        self.killed_runs: list[tuple[str, int]] = []
        """(task id, fuel used by then) for each run of a task with safe points that a kill ended."""
        self.resumed_runs: list[tuple[str, int]] = []
        """(task id, fuel of the snapshot) for each run that resumed a snapshot."""
        self.outputs_checked: list[str] = []
        """Resumed tasks whose output was compared with an uninterrupted run's."""
        self.outputs_mismatched: list[str] = []
        """Those whose output differed (must be empty)."""

    # -- tasks ------------------------------------------------------------------
    def on_submit(self, task_id: str, kind: str, sla: str, now: float) -> None:
        if task_id in self.tasks:
            raise ValueError(f"task {task_id} submitted twice")
        self.tasks[task_id] = TaskRecord(task_id, kind, sla, now)

    def on_attempt(self, task_id: str, now: float) -> None:
        self.tasks[task_id].attempts += 1

    def on_accept(self, task_id: str, now: float) -> None:
        rec = self.tasks[task_id]
        if rec.accepted_s is None:
            rec.accepted_s = now

    def on_result(self, task_id: str, status: str, executor: str, now: float) -> None:
        """A verified result for ``task_id`` (a second one counts as a duplicate)."""
        rec = self.tasks[task_id]
        rec.results += 1
        if rec.results == 1:
            rec.done_s = now
            rec.status = status
            rec.executor = executor
            if rec.accepted_s is None:
                rec.accepted_s = now

    def on_give_up(self, task_id: str, reason: str, now: float) -> None:
        """The submitter stopped trying: ``rejected`` (nobody took it), ``timeout`` or ``failed``."""
        rec = self.tasks[task_id]
        if rec.results == 0:
            rec.status = reason
            rec.done_s = now

    # -- gossip -----------------------------------------------------------------
    def on_gossip_publish(self, msg_id: str, receivers: int, now: float) -> None:
        self.gossip_sent[msg_id] = (now, receivers)

    def on_gossip_deliver(self, msg_id: str, node: str, now: float) -> None:
        sent = self.gossip_sent.get(msg_id)
        if sent is None:
            return
        key = (msg_id, node)
        if key in self._gossip_seen:
            self.gossip_dup += 1
            return
        self._gossip_seen.add(key)
        self.gossip_latency_ms.append((now - sent[0]) * 1000.0)

    # -- the rest ---------------------------------------------------------------
    def on_fl_round(self, rnd: int, accuracy: float, loss: float, updates: int, now: float, **extra: Any) -> None:
        self.fl_rounds.append(
            {"round": rnd, "accuracy": accuracy, "loss": loss, "updates": updates, "t_s": now, **extra}
        )

    def on_ledger(self, node: str, height: int, verified: bool, detail: str = "") -> None:
        self.ledgers[node] = {"height": height, "verified": verified, "detail": detail}

    def on_fork_proof(self, n: int = 1) -> None:
        self.fork_proofs += n

    def on_drops(self, counts: Iterable[tuple[str, int]]) -> None:
        for reason, n in counts:
            if n:
                self.drops[reason] += n

    def on_event(self, text: str, now: float) -> None:
        self.events.append((now, text))

    def on_moved_work(
        self,
        killed: Iterable[tuple[str, int]],
        resumed: Iterable[tuple[str, int]],
        checked: Iterable[str] = (),
        mismatched: Iterable[str] = (),
    ) -> None:
        """Runs of tasks with safe points that kills ended, the resumes, and the outputs checked."""
        self.killed_runs += killed
        self.resumed_runs += resumed
        self.outputs_checked += checked
        self.outputs_mismatched += mismatched

    def work_saved(self) -> tuple[int, int]:
        """(fuel a restart from zero would redo, fuel carried over from snapshots) over the tasks that a
        kill hit while they ran and that then got a verified result.

        A restart from zero redoes, at each kill, all the work the task had done by then (its fuel,
        every hop together); a resume redoes only what came after its snapshot. Per task the
        carried fuel is the sum over its resumes, at most the sum over its kills.
        """
        done = {t.task_id for t in self.tasks.values() if t.results >= 1}
        at_kill: defaultdict[str, int] = defaultdict(int)
        carried: defaultdict[str, int] = defaultdict(int)
        for tid, fuel in self.killed_runs:
            if tid in done:
                at_kill[tid] += fuel
        for tid, fuel in self.resumed_runs:
            if tid in at_kill:
                carried[tid] += fuel
        return sum(at_kill.values()), sum(min(carried[t], at_kill[t]) for t in at_kill)

    # -- figures ----------------------------------------------------------------
    def lost(self) -> list[str]:
        """Accepted tasks with no verified result (must be empty)."""
        return [t.task_id for t in self.tasks.values() if t.accepted_s is not None and t.results == 0]

    def duplicated(self) -> list[str]:
        """Tasks with more than one verified result (must be empty)."""
        return [t.task_id for t in self.tasks.values() if t.results > 1]

    def latencies_ms(self, sla: str | None = None) -> list[float]:
        return [
            (t.done_s - t.submitted_s) * 1000.0
            for t in self.tasks.values()
            if t.results >= 1 and t.done_s is not None and (sla is None or t.sla == sla)
        ]

    def throughput_series(self, bin_s: float = 1.0) -> list[tuple[float, int]]:
        """(bin start, completions in the bin)."""
        bins: defaultdict[int, int] = defaultdict(int)
        for t in self.tasks.values():
            if t.results >= 1 and t.done_s is not None:
                bins[int(t.done_s // bin_s)] += 1
        if not bins:
            return []
        return [(k * bin_s, bins.get(k, 0)) for k in range(0, max(bins) + 1)]

    def figures(self, elapsed_s: float, **params: Any) -> list[Figure]:
        """Every figure of the run; ``params`` (nodes, transport, scenario...) go on each."""
        out: list[Figure] = []

        def add(name: str, value: float, unit: str, **extra: Any) -> None:
            out.append(Figure(name, float(value), unit, {**params, **extra}))

        done = [t for t in self.tasks.values() if t.results >= 1]
        ok = [t for t in done if t.status == "ok"]
        add("simnet.tasks_submitted", len(self.tasks), "tasks")
        add("simnet.tasks_accepted", sum(1 for t in self.tasks.values() if t.accepted_s is not None), "tasks")
        add("simnet.tasks_completed", len(done), "tasks")
        add("simnet.tasks_ok", len(ok), "tasks")
        add("simnet.tasks_rejected", sum(1 for t in self.tasks.values() if t.status == "rejected"), "tasks")
        add("simnet.tasks_unfinished", sum(1 for t in self.tasks.values() if t.status == "unfinished"), "tasks")
        add("simnet.tasks_lost", len(self.lost()), "tasks")
        add("simnet.tasks_duplicated", len(self.duplicated()), "tasks")
        add("simnet.results_rerecorded", len(self.rerecorded), "tasks")
        add("simnet.executors_used", len({t.executor for t in done if t.executor}), "nodes")
        add(
            "simnet.task_attempts_mean",
            (sum(t.attempts for t in self.tasks.values()) / max(1, len(self.tasks))),
            "attempts",
        )
        span = max((t.done_s for t in done if t.done_s is not None), default=0.0) - min(
            (t.submitted_s for t in self.tasks.values()), default=0.0
        )
        add("simnet.throughput_per_s", len(done) / span if span > 0 else 0.0, "tasks/s")
        for sla in sorted({t.sla for t in self.tasks.values()}):
            lat = self.latencies_ms(sla)
            for q in (50, 90, 99):
                add(f"simnet.task_latency_p{q}_ms", percentile(lat, q), "ms", sla=sla)
        if self.gossip_latency_ms:
            add("simnet.gossip_delivery_p50_ms", percentile(self.gossip_latency_ms, 50), "ms")
            add("simnet.gossip_delivery_p99_ms", percentile(self.gossip_latency_ms, 99), "ms")
        expected = sum(r for _, r in self.gossip_sent.values())
        if expected:
            add("simnet.gossip_delivery_ratio", len(self._gossip_seen) / expected, "ratio")
        for r in self.fl_rounds:
            add("simnet.fl_accuracy", r["accuracy"], "ratio", round=r["round"])
        if self.fl_centralized is not None:
            add("simnet.fl_accuracy_centralized", self.fl_centralized, "ratio")
        if self.ledgers:
            heights = [v["height"] for v in self.ledgers.values()]
            add("simnet.ledger_height_max", max(heights), "entries")
            add("simnet.ledger_height_sum", sum(heights), "entries")
            add("simnet.ledgers_verified", sum(1 for v in self.ledgers.values() if v["verified"]), "ledgers")
            add("simnet.ledgers_failed", sum(1 for v in self.ledgers.values() if not v["verified"]), "ledgers")
        add("simnet.fork_proofs", self.fork_proofs, "proofs")
        for reason, n in sorted(self.drops.items()):
            add("simnet.drops", n, "messages", reason=reason)
        for what, n in sorted(self.byzantine.items()):
            add("simnet.byzantine", n, "events", what=what)
        if any(t.kind == "migrate" for t in self.tasks.values()):
            redo, kept = self.work_saved()
            add("migrate.runs_killed", len(self.killed_runs), "runs")
            add("migrate.tasks_resumed", len({t for t, _ in self.resumed_runs}), "tasks")
            add("migrate.fuel_at_kill", redo, "fuel")
            add("migrate.fuel_carried", kept, "fuel")
            add("migrate.fuel_redone", redo - kept, "fuel")
            add("migrate.work_saved_ratio", kept / redo if redo else math.nan, "ratio")
            add("migrate.outputs_checked", len(self.outputs_checked), "tasks")
            add("migrate.outputs_mismatched", len(self.outputs_mismatched), "tasks")
        add("simnet.run_s", elapsed_s, "s")
        return out
