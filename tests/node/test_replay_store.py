"""The SQLite replay table: concurrent adds share a transaction and all survive a reopen."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from edgenode.tasks import SqliteReplayStore


async def test_concurrent_adds_are_all_kept(tmp_path: Path) -> None:
    store = await SqliteReplayStore.open(tmp_path / "replay.db")
    author = os.urandom(32)
    nonces = [os.urandom(16) for _ in range(200)]
    await asyncio.gather(*(store.add(author, n, 10_000 + i) for i, n in enumerate(nonces)))
    await store.close()
    again = await SqliteReplayStore.open(tmp_path / "replay.db")
    try:
        kept = await again.load(0)
    finally:
        await again.close()
    assert sorted(kept) == sorted((author, n, 10_000 + i) for i, n in enumerate(nonces))
