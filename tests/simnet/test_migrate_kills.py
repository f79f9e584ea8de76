"""Long tasks with safe points and node kills: work saved against restarting from zero.

The accounting (fast), what a kill does to a run (the real sandbox, one short run), the
libp2p backend's note, and a small version of ``examples/scenarios/migrate_kills.toml`` on
memnet (slow): executors die while migrate.c tasks run, the tasks resume from the snapshots
their submitters kept, and the invariants hold.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest

from edgenode.identity import Identity
from edgenode.sandbox import Checkpointing, Limits, RunResult, Sandbox, SandboxConfig, TaskIO
from simnet import (
    FaultAction,
    Recorder,
    Scenario,
    ScenarioError,
    SimnetError,
    TaskMix,
    TaskRequest,
    parse_scenario,
    run_scenario,
)
from simnet._migrate import KillSwitch, migrate_input, migrate_limits, migrate_module
from simnet._p2p import P2PSwarm
from simnet._swarm import MemSwarm

SCENARIO = Path(__file__).resolve().parents[2] / "examples" / "scenarios" / "migrate_kills.toml"


@pytest.fixture(scope="module")
def module() -> bytes:
    try:
        return migrate_module()
    except SimnetError as exc:
        pytest.skip(str(exc))


def _recorder_with(killed: list[tuple[str, int]], resumed: list[tuple[str, int]], done: list[str]) -> Recorder:
    rec = Recorder()
    for tid in {t for t, _ in killed} | set(done):
        rec.on_submit(tid, "migrate", "cost", 0.0)
    for tid in done:
        rec.on_result(tid, "ok", "node", 1.0)
    rec.on_moved_work(killed, resumed)
    return rec


def test_work_saved_is_carried_fuel_over_fuel_at_the_kills() -> None:
    # a: killed at 100, resumed from 80; b: killed twice (40, then 90 after resuming from 30), resumed
    # from 30 and 70; c: killed at 50 with no snapshot yet (restarted from zero); d: killed, never done.
    killed = [("a", 100), ("b", 40), ("b", 90), ("c", 50), ("d", 60)]
    resumed = [("a", 80), ("b", 30), ("b", 70), ("x", 10)]
    rec = _recorder_with(killed, resumed, ["a", "b", "c"])
    assert rec.work_saved() == (280, 180)
    figures = {f.name: f.value for f in rec.figures(1.0)}
    assert figures["migrate.work_saved_ratio"] == pytest.approx(180 / 280)
    assert figures["migrate.fuel_redone"] == 100
    assert figures["migrate.runs_killed"] == 5 and figures["migrate.tasks_resumed"] == 3


def test_carried_fuel_never_exceeds_the_work_at_risk() -> None:
    rec = _recorder_with([("a", 100)], [("a", 80), ("a", 90)], ["a"])  # a resume without a kill seen
    assert rec.work_saved() == (100, 100)


def test_no_migrate_figures_without_migrate_tasks() -> None:
    rec = Recorder()
    rec.on_submit("t", "echo", "latency", 0.0)
    rec.on_result("t", "ok", "node", 0.1)
    assert not [f for f in rec.figures(1.0) if f.name.startswith("migrate.")]
    only_kills = _recorder_with([], [], ["m"])
    ratio = {f.name: f.value for f in only_kills.figures(1.0)}["migrate.work_saved_ratio"]
    assert math.isnan(ratio)  # no kill hit a running task: nothing to compare


def test_mix_keys_are_optional_and_checked() -> None:
    sc = parse_scenario({"workload": {"mix": [{"task": "migrate", "rounds": 50, "checkpoint_ms": 150}]}})
    assert sc.workload.mix[0] == TaskMix(task="migrate", rounds=50, checkpoint_ms=150)
    assert parse_scenario({}).workload.mix[0].checkpoint_ms == 0  # older files read as before
    for bad, key in (({"rounds": 0}, "rounds"), ({"checkpoint_ms": 50}, "checkpoint_ms"), ({"task": "x"}, "task")):
        with pytest.raises(ScenarioError, match=rf"mix\[0\]\.{key}"):
            parse_scenario({"workload": {"mix": [{"task": "migrate", **bad}]}})


def test_the_libp2p_backend_skips_migrate_tasks_with_a_note() -> None:
    sc = parse_scenario({"swarm": {"transport": "libp2p", "nodes": 2}})
    swarm = P2PSwarm(sc)
    out = asyncio.run(swarm.submit(TaskRequest("t1", TaskMix(task="migrate"), 1, 0)))
    assert not out.verified and not out.accepted and out.status == "skipped"
    assert any("migrate tasks" in n for n in swarm.notes)


def test_a_kill_stops_a_running_task_and_notes_its_fuel(module: bytes) -> None:
    switch = KillSwitch()
    with Sandbox(SandboxConfig(max_fuel=1 << 40)) as sb:
        h = sb.compile(module)
        lim = migrate_limits(400, 30_000)
        limits = Limits(lim.fuel, lim.timeout_ms, lim.memory_mb)
        shipped = threading.Event()
        policy = Checkpointing(Identity.generate(), every_ms=100, on_snapshot=lambda _s: shipped.set())
        run = switch.wrap(sb.prepare(h, TaskIO(stdin=migrate_input(7, 400)), limits,
                                     checkpointing=switch.guard(policy)), policy, (), lambda _r: None)
        outcome: list[RunResult | BaseException] = []

        def start() -> None:
            try:
                outcome.append(run.start())
            except BaseException as exc:  # the test looks at what ended the run
                outcome.append(exc)

        worker = threading.Thread(target=start)
        worker.start()
        assert shipped.wait(10), "no snapshot before the kill"
        switch.kill()
        worker.join(30)
        (ended,) = outcome
        assert isinstance(ended, asyncio.CancelledError)  # the executor records and answers nothing
        ((_tid, fuel),) = switch.killed
        assert 0 < fuel < lim.fuel
        late = switch.wrap(sb.prepare(h, TaskIO(stdin=migrate_input(7, 400)), limits, checkpointing=policy),
                           policy, (), lambda _r: None)
        with pytest.raises(asyncio.CancelledError):  # started while its node is down: no work
            late.start()
        assert len(switch.killed) == 1
        switch.revive()
        done = switch.wrap(sb.prepare(h, TaskIO(stdin=migrate_input(7, 20)), limits, checkpointing=policy),
                           policy, (), lambda _r: None).start()
        assert done.ok


def _small_scenario() -> dict[str, Any]:
    """The shipped scenario cut down: a burst of tasks on three executors of two slots, one killed."""
    table = tomllib.loads(SCENARIO.read_text())
    table["swarm"].update(duration_s=3.0, drain_s=60.0)
    for prof in table["profiles"].values():
        prof.update(slots=2, queue=8)
    table["workload"].update(rate_per_s=3.0)
    migrate = table["workload"]["mix"][0]
    migrate.update(rounds=900, checkpoint_ms=100)
    table["workload"]["mix"] = [migrate]
    table["faults"] = [{"at_s": 2.8, "kind": "kill", "count": 1, "duration_s": 1.0}]
    return table


class _KillWhereItHurts(MemSwarm):
    """A kill hits a node running a task whose submitter holds a snapshot of it (a scenario's kill
    picks its node at random, which a test of a few seconds cannot afford); its restart follows it."""

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario)
        self.chosen: dict[int, tuple[int, ...]] = {}

    async def apply(self, action: FaultAction) -> None:
        if action.action == "kill":
            def kept(i: int) -> int:  # runs on node i whose submitter holds a snapshot
                live = self.wasm[i].switch.live_tasks()
                return sum(1 for t in live if any(s.snapshots.latest(t) is not None for s in self.submitters))

            self.chosen[action.fault] = (max(range(len(self.ids)), key=kept),)
        nodes = self.chosen.get(action.fault, action.nodes)
        await super().apply(dataclasses.replace(action, nodes=nodes))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_killed_tasks_resume_from_snapshots_and_save_work(module: bytes) -> None:
    sc = parse_scenario(_small_scenario())
    res = asyncio.run(run_scenario(sc, _KillWhereItHurts(sc)))
    rec = res.recorder
    assert rec.lost() == [] and rec.duplicated() == []
    assert len(rec.ledgers) == 3 and all(v["verified"] for v in rec.ledgers.values()), rec.ledgers
    assert rec.killed_runs, "no kill hit a running task"
    assert res.figure("migrate.tasks_resumed") >= 1
    assert res.figure("migrate.work_saved_ratio") > 0
    assert rec.outputs_checked and rec.outputs_mismatched == []  # each resumed task's output as if uninterrupted
    assert res.invariants_hold
    assert res.figure("simnet.tasks_ok") == res.figure("simnet.tasks_submitted")
