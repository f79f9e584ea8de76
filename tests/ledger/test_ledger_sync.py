"""Replication: planning ranges from heads, applying received entries (verify first, store only valid)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from conftest import KeySigner, make_chain
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import (
    Entry,
    LedgerStore,
    MemoryLedgerStore,
    SyncRange,
    apply_entries,
    build_entry,
    decode_entries,
    encode_entries,
    plan_sync,
    receive_entries,
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
