"""The dashboard's sans-IO feed: snapshots, deltas, bounds."""

from __future__ import annotations

import json
import math

import pytest

from edgenode.dashboard import LATENCY_EDGES_MS, FaultMark, Feed, TaskRow


def row(i: int, t: float, status: str = "ok", lat: float | None = 5.0, ex: str = "a") -> TaskRow:
    return TaskRow(f"t{i}", "wasm", ex, status, lat, t, 1000 + i)


def test_snapshot_then_deltas_say_only_what_changed() -> None:
    f = Feed("x")
    f.see_node("a")
    f.set_advert("a", addrs=["/ip4/127.0.0.1/tcp/1"], capabilities=["wasm", "model:abc"], slots=2, free_slots=1,
                 queue_len=0, queue_cap=8, cost_class="low", version="0.1")
    f.set_links([("b", "a")])
    snap = f.snapshot()
    json.dumps(snap, allow_nan=False)
    (node,) = snap["nodes"]
    assert node["advert"]["models"] == ["abc"] and node["advert"]["capabilities"] == ["wasm"]
    assert node["advert"]["reach"] == "loopback"
    assert snap["links"] == [["a", "b", "direct"]]
    d = f.take_delta()
    assert d is not None and {n["id"] for n in d["nodes"]} == {"a"}
    assert f.take_delta() is None  # nothing changed since
    # the same advert again (a refresh) is no change
    f.set_advert("a", addrs=["/ip4/127.0.0.1/tcp/1"], capabilities=["wasm", "model:abc"], slots=2, free_slots=1,
                 queue_len=0, queue_cap=8, cost_class="low", version="0.1", issued_ms=99)
    assert f.take_delta() is None
    f.on_task(row(1, 0.5))
    d = f.take_delta()
    assert d is not None and [t["id"] for t in d["tasks"]] == ["t1"] and "links" not in d
    assert d["nodes"][0]["tasks"] == 1 and d["counters"]["finished"] == 1


def test_histogram_and_throughput_bins() -> None:
    f = Feed("x")
    for i, (t, lat) in enumerate([(0.1, 0.5), (0.2, 7.0), (3.5, 40_000.0), (3.6, None)]):
        f.on_task(row(i, t, lat=lat))
    assert sum(f.hist) == 3 and f.hist[0] == 1 and f.hist[-1] == 1
    assert f.hist[LATENCY_EDGES_MS.index(10)] == 1
    assert [b[:2] for b in f.bins] == [[0.0, 2], [1.0, 0], [2.0, 0], [3.0, 2]]
    f.take_delta()
    f.on_task(row(9, 5.2, status="trap"))
    d = f.take_delta()
    assert d is not None and d["bins"] == [[4.0, 0, 0], [5.0, 1, 0]]
    assert d["counters"]["not_ok"] == 1


def test_bounds_fl_rounds_security_and_faults() -> None:
    f = Feed("x", max_tasks=3, max_nodes=2)
    for i in range(5):
        f.on_task(row(i, float(i), ex=f"n{i}"))
    assert [t.task_id for t in f.tasks] == ["t2", "t3", "t4"] and len(f.nodes) == 2
    f.on_fl_round(1, 0.5, 1.2, 3, 1.0)
    f.on_fl_round(1, 0.6, 1.1, 3, 1.5)  # the same round reported again replaces it
    f.on_fl_round(2, math.nan, math.inf, 3, 2.0)
    snap = f.snapshot()
    json.dumps(snap, allow_nan=False)
    assert [r["accuracy"] for r in snap["fl"]["rounds"]] == [0.6, None]
    f.see_node("p")
    f.on_offence("p", "forged_receipt", 3.0, banned=True)
    f.set_refusals({"rate": 2, "not_member": 0})
    f.set_faults([FaultMark("partition", "partition", 1.0, None, ("p",))])
    snap = f.snapshot()
    assert snap["security"]["banned"] == ["p"] and snap["security"]["refusals"] == {"rate": 2}
    assert snap["faults"][0]["end_s"] is None
    with pytest.raises(ValueError):
        f.set_state("p", "sideways")


def test_reachability_from_addresses() -> None:
    f = Feed("x")
    cases = {
        "none": [],
        "relayed": ["/ip4/1.2.3.4/tcp/1/p2p/X/p2p-circuit"],
        "lan": ["/ip4/192.168.1.5/tcp/4001", "/ip4/127.0.0.1/tcp/4001"],
        "public": ["/ip4/8.8.8.8/tcp/4001"],
        "loopback": ["/ip4/127.0.0.1/tcp/4001"],
    }
    for want, addrs in cases.items():
        f.set_advert(want, addrs=addrs, capabilities=[], slots=1, free_slots=1, queue_len=0, queue_cap=1,
                     cost_class="low", version="v")
        assert f.nodes[want]["advert"]["reach"] == want
    f.set_advert("p172", addrs=["/ip4/172.20.0.2/tcp/1"], capabilities=[], slots=1, free_slots=1, queue_len=0,
                 queue_cap=1, cost_class="low", version="v")
    assert f.nodes["p172"]["advert"]["reach"] == "lan"
