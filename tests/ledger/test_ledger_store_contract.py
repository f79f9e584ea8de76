"""One contract, every store: memory and SQLite behave alike."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest
from conftest import KeySigner, make_chain

from ledger import (
    ChainError,
    Ledger,
    LedgerLocalError,
    LedgerStore,
    build_entry,
    verify_chain,
    verify_store,
)


async def test_empty_store(store: LedgerStore, signer: KeySigner) -> None:
    assert await store.heads() == {}
    assert await store.authors() == []
    assert await store.head(signer.public_key) is None
    assert await store.get(signer.public_key, 1) is None
    assert await store.range(signer.public_key, 1, 10) == []
    assert await store.forks() == []
    assert (await verify_store(store)).ok


async def test_append_read_back(store: LedgerStore, new_signer: Callable[[], KeySigner]) -> None:
    a, b = new_signer(), new_signer()
    ca, cb = make_chain(a, 5), make_chain(b, 3)
    for e in ca:
        assert await store.append(e) is True
    assert await store.append_many(cb) == 3
    assert await store.heads() == {a.public_key: (5, ca[-1].hash), b.public_key: (3, cb[-1].hash)}
    assert await store.lengths() == {a.public_key: 5, b.public_key: 3}
    assert await store.authors() == sorted([a.public_key, b.public_key])
    assert await store.head(a.public_key) == ca[-1]
    assert await store.get(a.public_key, 2) == ca[1]
    assert await store.range(a.public_key, 2, 4) == ca[1:4]
    assert await store.range(a.public_key, 0, 100) == ca
    assert await store.range(a.public_key, 4, 2) == []
    report = await verify_store(store)
    assert report.ok and report.entries == 8


async def test_duplicates_are_idempotent(store: LedgerStore, signer: KeySigner) -> None:
    c = make_chain(signer, 3)
    await store.append_many(c)
    assert await store.append(c[1]) is False
    assert await store.append_many(c) == 0
    assert await store.append(c[2].without_body()) is False
    assert await store.range(signer.public_key, 1, 3) == c


@pytest.mark.parametrize("case", ["gap", "bad_signature", "broken_link", "bad_genesis", "other_start"])
async def test_invalid_entries_are_never_stored(store: LedgerStore, signer: KeySigner, case: str) -> None:
    c = make_chain(signer, 4)
    await store.append_many(c[:2])
    bad = {
        "gap": c[3],
        "bad_signature": dataclasses.replace(c[2], kind="forged"),
        "broken_link": build_entry(signer, make_chain(signer, 2, t0=7_000)[1], "x", b"", 8_000),
        "bad_genesis": dataclasses.replace(make_chain(KeySigner(), 1)[0], prev=b"\x01" * 32),
        "other_start": make_chain(KeySigner(), 2)[1],
    }[case]
    with pytest.raises(ChainError) as info:
        await store.append(bad)
    assert info.value.reason == (case if case != "other_start" else "gap")
    assert await store.heads() == {signer.public_key: (2, c[1].hash)}
    assert (await verify_store(store)).ok


async def test_append_many_is_all_or_nothing(store: LedgerStore, signer: KeySigner) -> None:
    c = make_chain(signer, 5)
    with pytest.raises(ChainError) as info:
        await store.append_many([c[0], c[1], dataclasses.replace(c[2], kind="forged"), c[3]])
    assert info.value.seq == 3
    assert await store.heads() == {}
    assert await store.append_many(c) == 5


async def test_fork_is_refused_and_proven(store: LedgerStore, signer: KeySigner) -> None:
    c = make_chain(signer, 3)
    await store.append_many(c)
    twin = build_entry(signer, c[0], "task_result", b"a different second entry", c[0].timestamp_ms)
    with pytest.raises(ChainError) as info:
        await store.append(twin)
    assert (info.value.seq, info.value.reason) == (2, "fork")
    forks = await store.forks()
    assert len(forks) == 1 and forks[0].seq == 2 and forks[0].author == signer.public_key
    forks[0].verify()
    assert await store.get(signer.public_key, 2) == c[1]  # nothing valid lost
    report = await verify_store(store)
    assert not report.ok and report.failures[0].reason == "fork" and report.failures[0].first_bad_seq == 2
    # a forged twin (bad signature) is not a fork, just a bad entry
    with pytest.raises(ChainError) as info:
        await store.append(dataclasses.replace(c[2], kind="forged"))
    assert info.value.reason == "bad_signature" and len(await store.forks()) == 1


async def test_add_fork_checks_the_proof(store: LedgerStore, signer: KeySigner) -> None:
    from ledger import EquivocationProof, InvalidProofError

    c = make_chain(signer, 2)
    twin = build_entry(signer, c[0], "x", b"y", c[0].timestamp_ms)
    await store.add_fork(EquivocationProof.of(c[1], twin))
    assert [p.seq for p in await store.forks()] == [2]
    with pytest.raises(InvalidProofError):
        await store.add_fork(EquivocationProof.of(c[1], dataclasses.replace(twin, kind="z")))


async def test_closed_store_refuses(store: LedgerStore, signer: KeySigner) -> None:
    async with store as same:
        assert same is store and await store.heads() == {}
    await store.close()  # idempotent
    with pytest.raises(LedgerLocalError):
        await store.append(make_chain(signer, 1)[0])
    with pytest.raises(LedgerLocalError):
        await store.heads()


async def test_ledger_appends_in_order_under_concurrency(store: LedgerStore, signer: KeySigner) -> None:
    led = Ledger(store, signer)
    assert await led.head() is None
    entries = await asyncio.gather(*(led.append("task_result", str(i).encode(), 1_000 + i) for i in range(40)))
    assert sorted(e.seq for e in entries) == list(range(1, 41))
    chain = await store.range(signer.public_key, 1, 40)
    verify_chain(chain)
    assert {e.body for e in chain} == {str(i).encode() for i in range(40)}
    batch = await led.append_batch([("model_update", b"m", 2_000), ("task_result", b"t", 2_001)])
    assert [e.seq for e in batch] == [41, 42] and await led.head() == batch[-1]
    assert await led.append_batch([]) == []


async def test_ledger_never_lets_time_go_backwards(store: LedgerStore, signer: KeySigner) -> None:
    led = Ledger(store, signer)
    first = await led.append("genesis", b"", 5_000)
    second = await led.append("task_result", b"", 4_000)  # clock stepped back
    assert second.timestamp_ms == first.timestamp_ms
    assert (await verify_store(store)).ok


async def test_ledger_resumes_an_existing_chain(store: LedgerStore, signer: KeySigner) -> None:
    await store.append_many(make_chain(signer, 3))
    e = await Ledger(store, signer).append("task_result", b"next", 10_000)
    assert e.seq == 4
    verify_chain(await store.range(signer.public_key, 1, 4))


class _WrongKeySigner:
    """Claims one public key, signs with another."""

    def __init__(self) -> None:
        self.public_key = KeySigner().public_key
        self._other = KeySigner()

    def sign(self, data: bytes) -> bytes:
        return self._other.sign(data)


async def test_ledger_refuses_a_signer_that_does_not_match_its_key(store: LedgerStore) -> None:
    with pytest.raises(LedgerLocalError, match="signer"):
        await Ledger(store, _WrongKeySigner()).append("genesis", b"", 1)
    assert await store.heads() == {}
