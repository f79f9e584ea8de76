"""The driver and the report over a fake backend (the logic; real swarms are in test_swarm.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from simnet import (
    REPORT_JSON,
    FaultAction,
    FLRound,
    FLSection,
    LedgerState,
    Recorder,
    SwarmBackend,
    SwarmState,
    TaskOutcome,
    TaskRequest,
    arrivals,
    parse_scenario,
    percentile,
    run_scenario,
    write_report,
)


class FakeBackend(SwarmBackend):
    """Executors that answer at once; killed ones refuse; a 'lose' flag drops accepted work."""

    def __init__(self, n: int, *, lose: bool = False, double_record: bool = False) -> None:
        self.notes: list[str] = []
        self._ids = [f"node{i}" for i in range(n)]
        self.dead: set[int] = set()
        self.applied: list[FaultAction] = []
        self.started = self.stopped = False
        self.lose = lose
        self.double_record = double_record
        self.recorded: dict[str, list[str]] = {i: [] for i in self._ids}
        self.submitted: list[TaskRequest] = []

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    @property
    def node_ids(self) -> list[str]:
        return self._ids

    async def submit(self, req: TaskRequest) -> TaskOutcome:
        self.submitted.append(req)
        live = [i for i in range(len(self._ids)) if i not in self.dead]
        if not live:
            return TaskOutcome(verified=False, status="rejected", attempts=1)
        ex = live[req.payload % len(live)]
        if self.lose:
            return TaskOutcome(verified=False, status="timeout", accepted=True, attempts=1)
        self.recorded[self._ids[ex]].append(req.task_id)
        if self.double_record:
            other = self._ids[(ex + 1) % len(self._ids)]
            self.recorded[other].append(req.task_id)
        return TaskOutcome(verified=True, status="ok", executor=self._ids[ex], accepted=True, attempts=1)

    async def apply(self, action: FaultAction) -> None:
        self.applied.append(action)
        if action.action == "kill":
            self.dead |= set(action.nodes)
        elif action.action == "restart":
            self.dead -= set(action.nodes)

    async def gossip_probe(self, msg_id: str, on_deliver: Callable[[str, str], None]) -> int:
        for n in self._ids[:3]:
            on_deliver(msg_id, n)
        return len(self._ids)

    async def run_fl(self, fl: FLSection, on_round: Callable[[FLRound], None]) -> float | None:
        for r in range(1, fl.rounds + 1):
            on_round(FLRound(r, 0.5 + 0.1 * r, 1.0 / r, 3))
        return 0.97

    async def collect(self) -> SwarmState:
        return SwarmState(
            ledgers=tuple(LedgerState(n, len(t), True, task_ids=tuple(t)) for n, t in self.recorded.items()),
            drops={"decode": 2},
        )


SCENARIO = {
    "swarm": {"name": "fake", "nodes": 5, "seed": 4, "duration_s": 1.2, "drain_s": 1.0},
    "workload": {"rate_per_s": 40.0, "start_s": 0.0, "mix": [{"task": "echo", "sla": "latency"}, {"sla": "cost"}]},
    "fl": {"enabled": True, "rounds": 3, "participants": 3},
    "faults": [{"at_s": 0.2, "kind": "kill", "nodes": [0, 1], "duration_s": 0.3}, {"at_s": 0.5, "kind": "degrade"}],
}


async def test_driver_submits_every_arrival_and_applies_faults(tmp_path: Path) -> None:
    sc = parse_scenario(SCENARIO)
    backend = FakeBackend(5)
    res = await run_scenario(sc, backend)
    expected = arrivals(sc.workload, sc.swarm.duration_s, sc.swarm.seed)
    assert [r.task_id for r in backend.submitted] == [a.task_id for a in expected]
    assert backend.started and backend.stopped
    assert [a.action for a in backend.applied] == ["kill", "restart", "degrade"]
    assert res.invariants_hold
    assert res.figure("simnet.tasks_submitted") == len(expected)
    assert res.figure("simnet.tasks_ok") == len(expected)
    assert res.figure("simnet.tasks_lost") == 0
    assert res.figure("simnet.drops", reason="decode") == 2
    assert [r["accuracy"] for r in res.recorder.fl_rounds] == [0.6, 0.7, 0.8]
    assert res.figure("simnet.fl_accuracy_centralized") == 0.97
    assert res.figure("simnet.ledger_height_sum") == len(expected)
    assert 0 < res.figure("simnet.gossip_delivery_ratio") < 1

    md = write_report(res, tmp_path / "rep")
    doc = json.loads((tmp_path / "rep" / REPORT_JSON).read_text())
    assert doc["invariants_hold"] is True
    assert {"latency.png", "throughput.png", "fl_accuracy.png", "faults.png"} <= set(doc["images"])
    for img in doc["images"]:
        assert (tmp_path / "rep" / img).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text()
    assert "Invariants hold" in text and "![latency.png](latency.png)" in text


async def test_lost_tasks_break_the_invariant() -> None:
    sc = parse_scenario({**SCENARIO, "fl": {}, "faults": []})
    res = await run_scenario(sc, FakeBackend(5, lose=True))
    assert not res.invariants_hold
    assert res.figure("simnet.tasks_lost") == res.figure("simnet.tasks_submitted") > 0


async def test_results_on_two_ledgers_count_as_rerecorded() -> None:
    sc = parse_scenario({**SCENARIO, "fl": {}, "faults": []})
    res = await run_scenario(sc, FakeBackend(5, double_record=True))
    assert res.figure("simnet.results_rerecorded") == res.figure("simnet.tasks_submitted") > 0
    assert res.figure("simnet.tasks_duplicated") == 0


def test_recorder_latency_by_sla_and_percentiles() -> None:
    rec = Recorder()
    for i in range(100):
        rec.on_submit(f"t{i}", "echo", "latency" if i % 2 else "cost", 0.0)
        rec.on_accept(f"t{i}", 0.001)
        rec.on_result(f"t{i}", "ok", "x", (i + 1) / 1000)
    lat = rec.latencies_ms("latency")
    assert len(lat) == 50 and min(lat) == 2.0 and max(lat) == 100.0
    figs = {(f.name, f.params.get("sla")): f.value for f in rec.figures(1.0)}
    assert figs[("simnet.task_latency_p50_ms", "latency")] == percentile(lat, 50)
    assert figs[("simnet.task_latency_p99_ms", "cost")] == 99.0
    assert rec.lost() == [] and rec.duplicated() == []
    rec.on_result("t0", "ok", "y", 1.0)
    assert rec.duplicated() == ["t0"]


def test_percentile_nearest_rank() -> None:
    xs = [float(i) for i in range(1, 101)]
    assert percentile(xs, 50) == 50.0
    assert percentile(xs, 99) == 99.0
    assert percentile(xs, 100) == 100.0
    assert percentile([3.0], 90) == 3.0
