"""Placement and the advert table: capabilities, load, RTT, cost, deadline, expiry."""

from __future__ import annotations

import pytest

from edgenode.errors import LocalError
from edgenode.protocol import Advert
from edgenode.scheduler import SLA_COST, SLA_LATENCY, AdvertTable, PlacementRequest, RttTable, place


def adv(peer: str, *, caps: tuple[str, ...] = ("wasm",), slots: int = 2, free: int = 2, queue: int = 0,
        cap: int = 8, cost: str = "standard", seq: int = 1) -> Advert:
    return Advert(peer, (f"/mem/{peer}",), caps, slots, free, queue, cap, cost, "0.1", seq, 0)


def test_required_capabilities_filter() -> None:
    ads = [adv("a"), adv("b", caps=("wasm", "model:m1")), adv("c", caps=("infer", "model:m1"))]
    got = place(PlacementRequest(("wasm", "model:m1"), 1000.0), ads, RttTable())
    assert [c.peer for c in got] == ["b"]


def test_latency_prefers_idle_and_near() -> None:
    rtt = RttTable()
    rtt.observe("far", 100.0)
    rtt.observe("near", 1.0)
    rtt.observe("loaded", 1.0)
    ads = [adv("far"), adv("near"), adv("loaded", free=0, queue=6)]
    got = [c.peer for c in place(PlacementRequest(("wasm",), 1000.0, SLA_LATENCY), ads, rtt)]
    assert got == ["near", "loaded", "far"]


def test_full_node_is_left_out() -> None:
    ads = [adv("full", free=0, queue=8, cap=8), adv("ok")]
    assert [c.peer for c in place(PlacementRequest(("wasm",), 1000.0), ads, RttTable())] == ["ok"]


def test_cost_sla_prefers_cheap_within_deadline() -> None:
    rtt = RttTable()
    for p, ms in (("cheap", 20.0), ("premium", 1.0), ("cheap_far", 500.0)):
        rtt.observe(p, ms)
    ads = [adv("cheap", cost="low"), adv("premium", cost="premium"), adv("cheap_far", cost="low")]
    got = [c.peer for c in place(PlacementRequest(("wasm",), 100.0, SLA_COST), ads, rtt)]
    assert got == ["cheap", "premium"]  # cheap_far cannot meet the 100 ms deadline
    lat = [c.peer for c in place(PlacementRequest(("wasm",), 100.0, SLA_LATENCY), ads, rtt)]
    assert lat[0] == "premium" and lat[-1] == "cheap_far"


def test_exclude_and_unknown_sla() -> None:
    ads = [adv("a"), adv("b")]
    assert [c.peer for c in place(PlacementRequest(("wasm",), 1e6), ads, RttTable(), exclude=["a"])] == ["b"]
    with pytest.raises(LocalError):
        place(PlacementRequest(("wasm",), 1e6, "fastest"), ads, RttTable())


def test_advert_table_keeps_newest_and_expires() -> None:
    t = AdvertTable(ttl_ms=1000)
    assert t.update(adv("a", seq=2), b"2", now_ms=0)
    assert not t.update(adv("a", seq=1), b"1", now_ms=10)
    assert t.get("a") is not None and t.get("a").seq == 2  # type: ignore[union-attr]
    assert t.update(adv("b"), b"b", now_ms=500)
    assert t.next_deadline() == 1000
    assert [a.peer_id for a in t.live(999)] == ["a", "b"]
    assert t.expire(1000) == ["a"]
    assert [a.peer_id for a in t.live(1000)] == ["b"]
    assert t.sealed(1000) == [b"b"]
    assert t.expire(1500) == ["b"] and len(t) == 0 and t.next_deadline() is None


def test_rtt_is_smoothed() -> None:
    r = RttTable(alpha=0.5, default_ms=7.0)
    assert r.get("x") == 7.0 and not r.known("x")
    r.observe("x", 10.0)
    r.observe("x", 20.0)
    assert r.get("x") == 15.0


def test_pending_tasks_spread_a_burst() -> None:
    rtt = RttTable()
    ads = [adv("a"), adv("b")]
    req = PlacementRequest(("wasm",), 1000.0)
    assert [c.peer for c in place(req, ads, rtt)] == ["a", "b"]
    assert [c.peer for c in place(req, ads, rtt, pending={"a": 3})] == ["b", "a"]
