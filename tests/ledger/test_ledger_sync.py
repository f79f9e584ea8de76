"""Replication: planning ranges from heads, applying received entries (verify first, store only valid)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from conftest import KeySigner, make_chain
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import (
    ChainPull,
    Entry,
    LedgerStore,
    MemoryLedgerStore,
    RangeAnswer,
    SyncRange,
    WitnessTable,
    apply_entries,
    build_entry,
    decode_entries,
    encode_entries,
    entry_size,
    plan_sync,
    read_range,
    receive_entries,
    stored_bytes,
    verify_store,
)

A, B, C = b"\xaa" * 32, b"\xbb" * 32, b"\xcc" * 32


def test_plan_both_directions_and_overlap() -> None:
    mine = {A: (10, b"h10"), B: (3, b"b3"), C: (5, b"c5")}
    theirs = {A: (4, b"h4"), B: (7, b"b7"), C: (5, b"c5")}
    plan = plan_sync(mine, theirs)
    assert plan.request == (SyncRange(B, 3, 7),)
    assert plan.send == (SyncRange(A, 4, 10),)
    assert plan.suspect_forks == ()
    plain = plan_sync(mine, theirs, overlap=0)
    assert plain.request == (SyncRange(B, 4, 7),) and plain.send == (SyncRange(A, 5, 10),)


def test_plan_unknown_authors_batches_and_forks() -> None:
    plan = plan_sync({}, {A: (2500, b"x")}, max_batch=1000)
    assert plan.request == (SyncRange(A, 1, 1000), SyncRange(A, 1001, 2000), SyncRange(A, 2001, 2500))
    fork = plan_sync({A: (5, b"one")}, {A: (5, b"two")})
    assert fork.suspect_forks == (A,) and fork.request == (SyncRange(A, 5, 5),) and fork.send == ()
    assert plan_sync({A: (5, b"x")}, {A: (5, b"x")}) == plan_sync({}, {})
    with pytest.raises(ValueError):
        plan_sync({}, {}, max_batch=0)


def test_apply_is_pure_and_verifies(signer: KeySigner) -> None:
    c = make_chain(signer, 5)
    res = apply_entries({}, {}, list(reversed(c)))  # order does not matter
    assert res.accepted == c and res.ok
    res = apply_entries({signer.public_key: c[1]}, {(signer.public_key, 1): c[0]}, c)
    assert res.accepted == c[2:] and res.duplicates == 2
    forged = dataclasses.replace(c[3], kind="forged")
    res = apply_entries({signer.public_key: c[1]}, {}, [c[2], forged, c[4]])
    assert res.accepted == [c[2]]
    assert [(e.seq, err.reason) for e, err in res.rejected] == [(4, "bad_signature"), (5, "bad_signature")]


async def _sync(a: LedgerStore, b: LedgerStore) -> None:
    """One full exchange between two stores, through the wire encoding."""
    plan = plan_sync(await a.heads(), await b.heads())
    for r in plan.request:
        wire = encode_entries(await b.range(r.author, r.start, r.end))
        await receive_entries(a, decode_entries(wire))
    for r in plan.send:
        wire = encode_entries(await a.range(r.author, r.start, r.end))
        await receive_entries(b, decode_entries(wire))


async def test_two_stores_converge(new_signer: Callable[[], KeySigner]) -> None:
    x, y, z = new_signer(), new_signer(), new_signer()
    s1, s2 = MemoryLedgerStore(), MemoryLedgerStore()
    await s1.append_many(make_chain(x, 30) + make_chain(z, 4))
    await s2.append_many(make_chain(y, 12) + make_chain(z, 9))
    await _sync(s1, s2)
    assert await s1.heads() == await s2.heads()
    assert (await s1.lengths())[z.public_key] == 9
    assert (await verify_store(s1)).ok and (await verify_store(s2)).ok


async def test_a_fork_is_proven_during_sync(signer: KeySigner) -> None:
    s1, s2 = MemoryLedgerStore(), MemoryLedgerStore()
    c = make_chain(signer, 3)
    twin = build_entry(signer, c[1], "task_result", b"the other third", c[1].timestamp_ms)
    await s1.append_many(c)
    await s2.append_many([*c[:2], twin, build_entry(signer, twin, "x", b"", twin.timestamp_ms)])
    plan = plan_sync(await s1.heads(), await s2.heads())
    [r] = plan.request
    res = await receive_entries(s1, await s2.range(r.author, r.start, r.end))
    assert res.accepted == [] and len(res.proofs) == 1 and res.proofs[0].seq == 3
    assert [p.seq for p in await s1.forks()] == [3]
    assert await s1.range(signer.public_key, 1, 9) == c  # the store kept its valid chain


async def test_forged_entries_are_never_stored(signer: KeySigner) -> None:
    store = MemoryLedgerStore()
    c = make_chain(signer, 4)
    bad = [c[0], dataclasses.replace(c[1], body=b"swapped body"), c[2], c[3]]
    res = await receive_entries(store, bad)
    assert res.accepted == [c[0]] and res.rejected[0][1].reason == "bad_body_hash"
    assert await store.range(signer.public_key, 1, 9) == [c[0]]


_S = KeySigner(bytes(range(32)))
_CH = make_chain(_S, 8)


@settings(max_examples=60)
@given(
    st.lists(st.lists(st.integers(0, 7), max_size=8), min_size=1, max_size=4),
    st.sets(st.integers(0, 7), max_size=3),
)
async def test_any_delivery_order_keeps_the_store_a_valid_prefix(batches: list[list[int]], forge: set[int]) -> None:
    forged = {i: dataclasses.replace(_CH[i], timestamp_ms=_CH[i].timestamp_ms + 1) for i in forge}
    store = MemoryLedgerStore()
    for batch in batches:
        entries: list[Entry] = [forged.get(i, _CH[i]) for i in batch]
        await receive_entries(store, entries)
        stored = await store.range(_S.public_key, 1, 100)
        assert stored == _CH[: len(stored)]
        assert all(i not in forge for i in range(len(stored)))
    assert (await verify_store(store)).ok


# -- the node's pull and range answer (sans-IO) -------------------------------------------------


def _raw(entries: list[Entry]) -> list[bytes]:
    return [e.to_bytes() for e in entries]


def test_pull_goes_on_after_cut_answers_until_the_height(signer: KeySigner) -> None:
    c = make_chain(signer, 10)
    pull = ChainPull(signer.public_key, 2, 10, max_batch=512)
    assert pull.next_range() == SyncRange(signer.public_key, 3, 514)
    step = pull.on_answer(_raw(c[2:5]))  # cut by the server's byte cap: seqs 3..5
    assert step.store == tuple(c[2:5]) and step.error is None and not step.done
    assert step.size == sum(entry_size(e) for e in c[2:5])
    assert pull.next_range() == SyncRange(signer.public_key, 6, 517)
    step = pull.on_answer(_raw(c[5:]))
    assert step.store == tuple(c[5:]) and step.done and pull.next_range() is None
    assert ChainPull(signer.public_key, 10, 10).next_range() is None  # nothing to fetch
    unbounded = ChainPull(signer.public_key, 0, None)
    unbounded.on_answer(_raw(c))
    assert not unbounded.done and unbounded.on_answer([]).done  # without a height: an empty answer ends it


def test_pull_stops_at_the_witness_budget_and_frees_the_slot(signer: KeySigner) -> None:
    c = make_chain(signer, 6)
    sizes = [entry_size(e) for e in c]
    table = WitnessTable(1, sum(sizes[:4]) + 1, 60.0)
    assert table.offer("p", 0.0) is None
    table.seed("p", sizes[0])  # entry 1 already held
    pull = ChainPull(signer.public_key, 1, 6, witness=table, peer="p")
    step = pull.on_answer(_raw(c[1:]))
    assert step.over_budget and step.done and step.store == tuple(c[1:4]) and step.error is None
    pull.stored(step)
    assert "p" not in table and table.offer("p", 1.0) == "budget"
    fits = WitnessTable(1, 10**6, 60.0)
    fits.offer("q", 0.0)
    ok = ChainPull(signer.public_key, 0, 6, witness=fits, peer="q")
    step = ok.on_answer(_raw(c))
    ok.stored(step)
    assert not step.over_budget and fits.spent("q") == sum(sizes) and "q" in fits


def test_pull_errors_are_the_peers_fault(signer: KeySigner, new_signer: Callable[[], KeySigner]) -> None:
    c = make_chain(signer, 5)
    other = make_chain(new_signer(), 2)

    def answer(have: int, raw: list[bytes]) -> tuple[str | None, tuple[Entry, ...]]:
        step = ChainPull(signer.public_key, have, 5).on_answer(raw)
        assert step.done
        return step.error, step.store

    assert answer(0, [c[0].to_bytes(), c[2].to_bytes()]) == ("answered range 1 with a gap", ())
    assert answer(0, _raw(other)) == ("sent another author's entries", ())
    err, stored = answer(0, [b"junk"])
    assert err is not None and err.startswith("sent undecodable entries") and stored == ()
    # only held seqs: they still go to the store (a fork there is proven), then no progress is an error
    assert answer(3, _raw(c[1:3])) == ("answered range 4 with older entries only", tuple(c[1:3]))
    with pytest.raises(ValueError):
        ChainPull(signer.public_key, 5, 5).on_answer([])


async def test_range_answer_is_capped_in_entries_and_bytes_but_never_empty(signer: KeySigner) -> None:
    c = make_chain(signer, 20)
    store = MemoryLedgerStore()
    await store.append_many(c)
    a = signer.public_key
    whole = await read_range(store, a, 1, 512, max_entries=512, max_bytes=10**9)
    assert whole.entries == c and not whole.cut
    assert (await read_range(store, a, 5, 512, max_entries=3, max_bytes=10**9)).entries == c[4:7]
    size = entry_size(c[0])
    cut = await read_range(store, a, 1, 512, max_entries=512, max_bytes=size * 5 + size // 2)
    assert cut.entries == c[:5] and cut.cut
    one = await read_range(store, a, 2, 512, max_entries=512, max_bytes=1)
    assert one.entries == [c[1]] and one.cut  # one entry over the whole budget still goes out
    assert (await read_range(store, a, 21, 512, max_entries=512, max_bytes=10**9)).entries == []
    assert RangeAnswer(a, 1, 0, max_entries=512, max_bytes=1).next_read() is None
    assert await stored_bytes(store, a, 20, 10**9) == sum(entry_size(e) for e in c)
    assert await stored_bytes(store, a, 20, 0) == sum(entry_size(e) for e in c[:8])  # stops past the cap
