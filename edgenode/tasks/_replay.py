"""Where the executor keeps admitted specs' nonces so a restart does not reopen replays.

:class:`~edgenode.scheduler.ReplayGuard` is the sans-IO table; a :class:`ReplayStore`
persists its entries until they expire.  :class:`MemoryReplayStore` keeps nothing
(in-memory nodes lose everything on restart anyway); :class:`SqliteReplayStore`
keeps one small table in the node's home (``replay.db``), one aiosqlite connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Protocol

import aiosqlite

from ..errors import LocalError

__all__ = ["ReplayStore", "MemoryReplayStore", "SqliteReplayStore", "REPLAY_DB"]

REPLAY_DB = "replay.db"
"""File name of the replay table inside a node's home."""

_KEY = 32  # an author is a 32-byte Ed25519 key; the nonce follows it in the stored key

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replay (key BLOB PRIMARY KEY, expires INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS replay_expires ON replay (expires);
"""


class ReplayStore(Protocol):
    """Persistence for the replay table: admitted (author, nonce) pairs until their expiry."""

    async def load(self, now_ms: int) -> list[tuple[bytes, bytes, int]]:
        """The entries that have not expired at ``now_ms``: ``(author, nonce, expires_ms)``."""
        ...

    async def add(self, author: bytes, nonce: bytes, expires_ms: int) -> None:
        """Keep an admitted spec's pair until ``expires_ms``."""
        ...

    async def forget(self, now_ms: int) -> None:
        """Drop the entries expired at ``now_ms``."""
        ...

    async def close(self) -> None: ...


class MemoryReplayStore:
    """Keeps nothing: the in-memory guard is all an in-memory node has."""

    async def load(self, now_ms: int) -> list[tuple[bytes, bytes, int]]:
        return []

    async def add(self, author: bytes, nonce: bytes, expires_ms: int) -> None:
        return None

    async def forget(self, now_ms: int) -> None:
        return None

    async def close(self) -> None:
        return None


class SqliteReplayStore:
    """The replay table in an SQLite file (WAL; ``synchronous=NORMAL`` survives a process crash)."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._pending: list[tuple[bytes, int]] = []
        self._writer: asyncio.Future[None] | None = None

    @classmethod
    async def open(cls, path: str | Path, *, synchronous: str = "NORMAL") -> SqliteReplayStore:
        """Open (or create) the table at ``path``; LocalError if the file is not usable."""
        path = Path(path)
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise LocalError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        try:
            conn = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise LocalError(f"cannot open the replay table {path}: {exc}") from exc
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            await conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            await conn.close()
            raise LocalError(f"cannot use the replay table {path}: {exc}") from exc
        return cls(conn, path)

    async def load(self, now_ms: int) -> list[tuple[bytes, bytes, int]]:
        try:
            async with self._conn.execute("SELECT key, expires FROM replay WHERE expires > ?", (now_ms,)) as cur:
                rows = await cur.fetchall()
        except sqlite3.Error as exc:
            raise LocalError(f"cannot read the replay table {self.path}: {exc}") from exc
        return [(bytes(k[:_KEY]), bytes(k[_KEY:]), int(exp)) for k, exp in rows if len(k) > _KEY]

    async def add(self, author: bytes, nonce: bytes, expires_ms: int) -> None:
        """Keep the pair; returns once it is written.  Concurrent adds share one transaction."""
        if len(author) != _KEY:
            raise LocalError("a replay entry's author is a 32-byte key")
        self._pending.append((author + nonce, expires_ms))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_pending())
        await asyncio.shield(self._writer)

    async def _write_pending(self) -> None:
        while self._pending:
            rows, self._pending = self._pending, []
            try:
                await self._conn.execute("BEGIN")
                try:
                    await self._conn.executemany("INSERT OR REPLACE INTO replay (key, expires) VALUES (?, ?)", rows)
                    await self._conn.execute("COMMIT")
                except BaseException:
                    await self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                self._pending.clear()
                raise LocalError(f"cannot write the replay table {self.path}: {exc}") from exc

    async def forget(self, now_ms: int) -> None:
        try:
            await self._conn.execute("DELETE FROM replay WHERE expires <= ?", (now_ms,))
        except sqlite3.Error as exc:
            raise LocalError(f"cannot write the replay table {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._writer is not None and not self._writer.done():
            with contextlib.suppress(LocalError):  # its waiters have the error
                await self._writer
        await self._conn.close()
