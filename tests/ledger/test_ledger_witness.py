"""WitnessTable and take_within: slots that rotate by last head, byte budgets, batches cut by bytes."""

from __future__ import annotations

import pytest

from ledger import WitnessTable, build_entry, entry_size, take_within


def _chain(signer, sizes):
    out, prev = [], None
    for i, n in enumerate(sizes):
        prev = build_entry(signer, prev, "blob", b"x" * n, 1000 + i)
        out.append(prev)
    return out


def test_take_within_cuts_by_bytes_but_never_below_one_entry(signer):
    entries = _chain(signer, [100, 100, 100])
    one = entry_size(entries[0])
    assert take_within(entries, 2 * one) == entries[:2]
    assert take_within(entries, 10) == entries[:1]  # too small for any: the first goes anyway
    assert take_within(entries, 10, at_least_one=False) == []
    assert take_within(entries, 10 * one) == entries


def test_slots_go_to_new_announcers_only_when_a_witness_is_silent():
    w = WitnessTable(slots=2, budget_bytes=1000, idle_s=60.0)
    assert w.offer("a", 0.0) is None and w.offer("b", 10.0) is None
    assert w.offer("c", 30.0) == "slots"  # both heard within a minute
    assert w.offer("a", 50.0) is None  # a refreshes: b is now the least recently heard
    assert w.offer("c", 69.0) == "slots"  # b silent for 59 s
    assert w.offer("c", 70.0) is None  # b silent for 60 s: rotated out
    assert w.peers == {"a", "c"} and w.counters["rotated"] == 1 and w.counters["refused_slots"] == 2


def test_budget_is_charged_and_an_exhausted_peer_loses_its_slot_for_good():
    w = WitnessTable(slots=1, budget_bytes=1000, idle_s=0.0, remember=2)
    assert w.offer("a", 0.0) is None
    w.seed("a", 400)
    assert w.known("a") and w.room("a") == 600
    w.charge("a", 600)
    assert w.room("a") == 0
    w.exhaust("a")
    assert "a" not in w and w.offer("a", 1.0) == "budget"
    assert w.offer("b", 1.0) is None
    for p in ("x", "y"):  # the memory of exhausted peers is bounded
        w.exhaust(p)
    assert w.offer("a", 2.0) is None


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        WitnessTable(slots=-1, budget_bytes=0, idle_s=0.0)
