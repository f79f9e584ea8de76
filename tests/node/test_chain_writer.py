"""The node's chain writer: concurrent appends become one valid chain (group commit)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edgenode.identity import Identity
from edgenode.tasks import ChainWriter, SystemClock
from ledger import Ledger, LedgerStore, MemoryLedgerStore, SqliteLedgerStore, verify_store


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_concurrent_appends_make_one_chain(tmp_path: Path, kind: str) -> None:
    store: LedgerStore = (
        MemoryLedgerStore() if kind == "memory" else await SqliteLedgerStore.open(tmp_path / "l.db")
    )
    ident = Identity.generate()
    w = ChainWriter(store, ident, SystemClock())
    done = await asyncio.gather(*(w.append("task_result", str(i).encode()) for i in range(50)))
    await w.flush()
    assert sorted(a.entry.seq for a in done) == list(range(1, 51))
    for a in done:
        assert (a.prev is None) == (a.entry.seq == 1)
        assert a.prev is None or a.prev.hash == a.entry.prev
    assert w.height == 50
    assert (await verify_store(store)).ok
    head = await store.head(ident.public_key)
    assert head is not None and head.seq == 50
    await store.close()


async def test_append_builds_on_the_stored_head_and_names_it_as_prev() -> None:
    store = MemoryLedgerStore()
    ident = Identity.generate()
    w = ChainWriter(store, ident, SystemClock())
    first = await w.append("task_result", b"one")
    assert first.prev is None and first.entry.seq == 1
    other = await Ledger(store, ident).append("task_result", b"written elsewhere", first.entry.timestamp_ms)
    nxt = await w.append("task_result", b"two")
    assert nxt.entry.seq == 3 and nxt.prev == other
    assert w.height == 3 and (await verify_store(store)).ok
