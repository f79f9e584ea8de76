"""The node's chain writer: concurrent appends become one valid chain (group commit)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edgenode.identity import Identity
from edgenode.tasks import ChainWriter, SystemClock
from ledger import LedgerStore, MemoryLedgerStore, SqliteLedgerStore, verify_store


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
