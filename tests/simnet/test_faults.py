"""The sans-IO fault schedule."""

from __future__ import annotations

from simnet import Fault, FaultSchedule


def test_actions_come_due_in_time_order() -> None:
    faults = [
        Fault(at_s=5.0, kind="kill", count=2, duration_s=3.0),
        Fault(at_s=1.0, kind="partition", nodes=(0, 1), duration_s=2.0),
        Fault(at_s=2.0, kind="byzantine", count=1, behaviour="spam"),
        Fault(at_s=4.0, kind="degrade", count=3, latency_ms=100.0, loss=0.3),
    ]
    sched = FaultSchedule(faults, n_nodes=10, seed=1, end_s=20.0)
    assert sched.next_at() == 1.0
    assert sched.due(0.5) == []
    first = sched.due(1.0)
    assert [a.action for a in first] == ["partition"]
    assert first[0].nodes == (0, 1)
    mid = sched.due(4.5)
    assert [a.action for a in mid] == ["byzantine", "heal", "degrade"]
    assert mid[0].behaviour == "spam"
    assert mid[2].latency_ms == 100.0 and mid[2].loss == 0.3
    rest = sched.due(100.0)
    assert [a.action for a in rest] == ["kill", "restart"]
    assert rest[0].nodes == rest[1].nodes and len(rest[0].nodes) == 2
    assert sched.next_at() is None
    assert sched.due(1000.0) == []


def test_targets_are_seeded_and_distinct() -> None:
    faults = [Fault(at_s=1.0, kind="kill", count=5)]
    a = FaultSchedule(faults, 50, seed=7, end_s=10.0).actions
    b = FaultSchedule(faults, 50, seed=7, end_s=10.0).actions
    c = FaultSchedule(faults, 50, seed=8, end_s=10.0).actions
    assert a == b
    assert a[0].nodes != c[0].nodes
    assert len(set(a[0].nodes)) == 5 and all(0 <= n < 50 for n in a[0].nodes)


def test_spans_cover_open_ended_faults_to_the_end() -> None:
    sched = FaultSchedule(
        [Fault(at_s=2.0, kind="kill", count=1), Fault(at_s=3.0, kind="degrade", duration_s=4.0)], 4, 1, end_s=15.0
    )
    kill, degrade = sched.spans
    assert (kill.start_s, kill.end_s) == (2.0, 15.0)
    assert (degrade.start_s, degrade.end_s) == (3.0, 7.0)
    # an open-ended kill has no restart action
    assert [a.action for a in sched.actions] == ["kill", "degrade", "restore"]


def test_byzantine_nodes() -> None:
    sched = FaultSchedule(
        [
            Fault(kind="byzantine", nodes=(1,), behaviour="poison"),
            Fault(kind="byzantine", nodes=(2,), behaviour="spam"),
        ],
        5,
        1,
        end_s=5.0,
    )
    assert sched.byzantine_nodes() == {1, 2}
    assert sched.byzantine_nodes("poison") == {1}


def test_wind_down_ends_started_faults_and_never_starts_late_ones() -> None:
    faults = [
        Fault(at_s=2.0, kind="kill", count=1, duration_s=20.0),  # started, ends after the run
        Fault(at_s=3.0, kind="partition", nodes=(0, 1), duration_s=1.0),  # started and ended in the run
        Fault(at_s=12.0, kind="kill", count=2, duration_s=5.0),  # planned after a 10 s run
        Fault(at_s=4.0, kind="degrade", count=1, duration_s=30.0),  # started, ends after the run
    ]
    sched = FaultSchedule(faults, n_nodes=6, seed=3, end_s=30.0)
    assert [a.action for a in sched.due(10.0)] == ["kill", "partition", "heal", "degrade"]
    end = sched.wind_down(10.0)
    assert sorted(a.action for a in end) == ["restart", "restore"]
    assert {a.fault for a in end} == {0, 3}
    assert sched.next_at() is None
    assert sched.due(100.0) == [] and sched.wind_down(100.0) == []
