"""The SQLite store against bad files and hand-edited rows: reported clearly, nothing valid lost."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import KeySigner, make_chain
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import (
    ChainError,
    CorruptRowError,
    Entry,
    LedgerLocalError,
    SqliteLedgerStore,
    VerifyReport,
    receive_entries,
    verify_chain,
    verify_store,
)


async def _filled(path: Path, *signers: KeySigner, n: int = 10) -> list[list[Entry]]:
    async with await SqliteLedgerStore.open(path) as store:
        chains = [make_chain(s, n) for s in signers]
        for c in chains:
            await store.append_many(c)
    return chains


def _edit(path: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    conn = sqlite3.connect(path)
    with conn:
        assert conn.execute(sql, params).rowcount >= 1
    conn.close()


async def _report(path: Path) -> VerifyReport:
    async with await SqliteLedgerStore.open(path, readonly=True) as store:
        return await verify_store(store)


async def test_survives_reopen_and_reports_mode(tmp_path: Path, signer: KeySigner) -> None:
    path = tmp_path / "l.db"
    [chain] = await _filled(path, signer)
    async with await SqliteLedgerStore.open(path) as store:
        assert await store.range(signer.public_key, 1, 100) == chain
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


@pytest.mark.parametrize(
    ("edit", "params", "seq", "reason"),
    [
        ("UPDATE entries SET kind = 'edited' WHERE seq = 4", (), 4, "bad_signature"),
        ("UPDATE entries SET ts = ts + 1 WHERE seq = 6", (), 6, "bad_signature"),
        ("UPDATE entries SET body = x'00' WHERE seq = 5", (), 5, "bad_body_hash"),
        ("UPDATE entries SET signature = ? WHERE seq = 3", (bytes(64),), 3, "bad_signature"),
        ("DELETE FROM entries WHERE seq = 7", (), 7, "gap"),
        ("UPDATE entries SET signature = x'0011' WHERE seq = 2", (), 2, "malformed"),
        ("UPDATE entries SET prev = 'text' WHERE seq = 8", (), 8, "malformed"),
        ("UPDATE entries SET kind = 'BAD KIND' WHERE seq = 9", (), 9, "malformed"),
    ],
)
async def test_hand_edited_rows_are_named(
    tmp_path: Path, new_signer: Callable[[], KeySigner], edit: str, params: tuple[object, ...], seq: int, reason: str
) -> None:
    path = tmp_path / "l.db"
    victim, bystander = new_signer(), new_signer()
    chains = await _filled(path, victim, bystander)
    _edit(path, edit + " AND author = ?", (*params, victim.public_key))
    report = await _report(path)
    assert not report.ok
    [bad] = report.failures
    assert (bad.author, bad.first_bad_seq, bad.reason) == (victim.public_key, seq, reason)
    assert bad.verified == seq - 1
    # nothing valid lost: the other chain and the good prefix still read back
    async with await SqliteLedgerStore.open(path, readonly=True) as store:
        assert await store.range(bystander.public_key, 1, 100) == chains[1]
        assert await store.range(victim.public_key, 1, seq - 1) == chains[0][: seq - 1]


async def test_flipped_signature_byte(tmp_path: Path, signer: KeySigner) -> None:
    path = tmp_path / "l.db"
    [chain] = await _filled(path, signer)
    sig = bytearray(chain[4].signature)
    sig[10] ^= 0x01
    _edit(path, "UPDATE entries SET signature = ? WHERE seq = 5", (bytes(sig),))
    [bad] = (await _report(path)).failures
    assert (bad.first_bad_seq, bad.reason) == (5, "bad_signature")


async def test_reordered_rows(tmp_path: Path, signer: KeySigner) -> None:
    path = tmp_path / "l.db"
    await _filled(path, signer)
    # swap the content of rows 3 and 4 (keeping their keys): both now claim the wrong seq
    _edit(path, "UPDATE entries SET seq = -1 WHERE seq = 3")
    _edit(path, "UPDATE entries SET seq = 3 WHERE seq = 4")
    _edit(path, "UPDATE entries SET seq = 4 WHERE seq = -1")
    [bad] = (await _report(path)).failures
    assert (bad.first_bad_seq, bad.reason) == (3, "broken_link")  # row 3 holds entry 4, whose prev is entry 3


async def test_malformed_author_column_is_an_integrity_problem(tmp_path: Path, signer: KeySigner) -> None:
    path = tmp_path / "l.db"
    await _filled(path, signer)
    _edit(path, "UPDATE entries SET author = 'me' WHERE seq = 10")
    report = await _report(path)
    assert not report.ok and any("malformed author" in p for p in report.integrity)
    assert report.failures == ()  # seq 1..9 still verify


async def test_corrupt_head_blocks_appends_clearly(tmp_path: Path, signer: KeySigner) -> None:
    path = tmp_path / "l.db"
    await _filled(path, signer, n=3)
    _edit(path, "UPDATE entries SET signature = x'00' WHERE seq = 3")
    async with await SqliteLedgerStore.open(path) as store:
        with pytest.raises(CorruptRowError, match="corrupt"):
            await store.append(make_chain(signer, 4)[3])


@pytest.mark.parametrize("content", ["garbage", "truncated", "other_app", "empty_ro", "missing_ro", "text"])
async def test_bad_files_give_one_clear_local_error(tmp_path: Path, signer: KeySigner, content: str) -> None:
    path = tmp_path / "l.db"
    readonly = content.endswith("_ro")
    if content == "garbage":
        path.write_bytes(os.urandom(8192))
    elif content == "text":
        path.write_text("this is not a database\n" * 100)
    elif content == "truncated":
        await _filled(path, signer, n=300)
        data = path.read_bytes()
        assert len(data) > 8192
        path.write_bytes(data[:4096])
    elif content == "other_app":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
        conn.close()
    elif content == "empty_ro":
        path.write_bytes(b"")
    before = path.read_bytes() if path.exists() else None
    before = path.read_bytes() if path.exists() else None
    try:
        store = await SqliteLedgerStore.open(path, readonly=readonly)
    except LedgerLocalError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
    else:
        # a truncated file may still open: then reading must fail cleanly or verification must flag it
        async with store:
            with contextlib.suppress(LedgerLocalError):
                assert not (await verify_store(store)).ok
    if before is not None:
        assert path.read_bytes() == before  # never rewritten


async def test_synchronous_option(tmp_path: Path, signer: KeySigner) -> None:
    with pytest.raises(LedgerLocalError):
        await SqliteLedgerStore.open(tmp_path / "x.db", synchronous="OFF")
    async with await SqliteLedgerStore.open(tmp_path / "x.db", synchronous="NORMAL") as store:
        await store.append_many(make_chain(signer, 2))
        verify_chain(await store.range(signer.public_key, 1, 2))


async def test_readonly_store_refuses_writes(tmp_path: Path, signer: KeySigner) -> None:
    path = tmp_path / "l.db"
    chain = (await _filled(path, signer, n=2))[0]
    async with await SqliteLedgerStore.open(path, readonly=True) as store:
        with pytest.raises(LedgerLocalError, match="read-only"):
            await store.append(make_chain(signer, 3)[2])
        assert await store.range(signer.public_key, 1, 5) == chain


async def test_lost_rows_are_refilled_only_by_entries_that_fit(tmp_path: Path, signer: KeySigner) -> None:
    path = tmp_path / "l.db"
    [chain] = await _filled(path, signer, n=8)
    _edit(path, "DELETE FROM entries WHERE seq IN (2, 3, 6)")
    async with await SqliteLedgerStore.open(path) as store:
        assert [(f.first_bad_seq, f.reason) for f in (await verify_store(store)).failures] == [(2, "gap")]
        with pytest.raises(ChainError) as info:
            await store.append(chain[1])  # seq 3 is missing too: 2 alone cannot be checked against it
        assert info.value.reason == "gap"
        other = make_chain(signer, 6, t0=50_000)[5]  # validly signed, but not the lost entry
        with pytest.raises(ChainError):
            await store.append(other)
        assert await store.append_many([chain[2], chain[1], chain[5]]) == 3  # any order
        assert await store.range(signer.public_key, 1, 8) == chain
        assert (await verify_store(store)).ok


async def test_lost_rows_come_back_through_sync(tmp_path: Path, signer: KeySigner) -> None:
    path = tmp_path / "l.db"
    [chain] = await _filled(path, signer, n=5)
    _edit(path, "DELETE FROM entries WHERE seq = 3")
    async with await SqliteLedgerStore.open(path) as store:
        res = await receive_entries(store, chain)  # a peer re-sends the whole chain
        assert res.repairs == [chain[2]] and res.duplicates == 4 and not res.rejected
        assert (await verify_store(store)).ok


async def test_negative_seq_is_an_integrity_problem(tmp_path: Path, signer: KeySigner) -> None:
    path = tmp_path / "l.db"
    await _filled(path, signer, n=4)
    _edit(path, "UPDATE entries SET seq = -4 WHERE seq = 4")
    report = await _report(path)
    assert any("malformed author or seq" in p for p in report.integrity) and not report.ok


_COLUMNS = ["author", "seq", "prev", "ts", "kind", "body_hash", "signature", "body"]
_VALUES = st.one_of(
    st.binary(max_size=70),
    st.text(max_size=20),
    st.integers(-(2**63), 2**63 - 1),
    st.none(),
)


@settings(max_examples=40)
@given(edits=st.lists(st.tuples(st.integers(1, 6), st.sampled_from(_COLUMNS), _VALUES), min_size=1, max_size=3))
async def test_any_row_edit_is_reported_never_raised(
    template_db: tuple[Path, KeySigner], tmp_path_factory: pytest.TempPathFactory, edits: list[tuple[int, str, object]]
) -> None:
    src, _ = template_db
    path = tmp_path_factory.mktemp("edit") / "l.db"
    shutil.copy(src, path)
    conn = sqlite3.connect(path)
    query = f"SELECT {', '.join(_COLUMNS)} FROM entries ORDER BY author, seq"
    original = conn.execute(query).fetchall()
    for seq, column, value in edits:
        try:
            with conn:
                conn.execute(f"UPDATE entries SET {column} = ? WHERE seq = ?", (value, seq))
        except sqlite3.IntegrityError:
            continue  # NOT NULL or a duplicate key: SQLite refused the edit
    # bodies are optional: a pruned (NULL) body is legal, so compare without them where pruned
    after = conn.execute(query).fetchall()
    pruned = [(*r[:7], None) if a[7] is None else r for r, a in zip(original, after, strict=True)]
    changed = after != pruned
    conn.close()
    report = await _report(path)
    if changed:
        assert not report.ok
    else:
        assert report.ok
    for status in report.failures:
        assert status.reason is not None and status.first_bad_seq is not None


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, KeySigner]:
    import asyncio

    path = tmp_path_factory.mktemp("tpl") / "l.db"
    signer = KeySigner(bytes(range(32)))

    async def fill() -> None:
        await _filled(path, signer, n=6)

    asyncio.run(fill())
    return path, signer
