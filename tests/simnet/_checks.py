"""What every real-libp2p swarm test asserts about a finished run."""

from __future__ import annotations

from simnet import RunResult


def assert_invariants_hold(res: RunResult, nodes: int, ok_share: float) -> None:
    """No accepted task lost or duplicated, all ``nodes`` ledgers verify, and the work really ran:
    more tasks than nodes, at least ``ok_share`` of them ok, each ok result on some chain."""
    rec = res.recorder
    assert rec.lost() == [], f"accepted tasks lost: {rec.lost()}"
    assert rec.duplicated() == []
    assert len(rec.ledgers) == nodes and all(v["verified"] for v in rec.ledgers.values()), rec.ledgers
    assert res.invariants_hold
    submitted = res.figure("simnet.tasks_submitted")
    ok = res.figure("simnet.tasks_ok")
    assert submitted > nodes
    assert ok >= ok_share * submitted, (ok, submitted)
    assert res.figure("simnet.ledger_height_sum") >= ok  # every ok result is on some executor's chain
