"""``SqliteLedgerStore``: the durable store, one aiosqlite connection, WAL.

Durability: the database runs in WAL mode with ``synchronous=FULL`` by default, so every
committed transaction is fsynced to the WAL before ``COMMIT`` returns, and an append is
acknowledged only then; it survives a process kill and a power cut. ``synchronous="NORMAL"``
(an option) survives a process kill but may lose the last commits on power loss.

Rows keep each field of an entry in its own column and nothing derived (no stored hash),
so an edited column is caught by the signature check of :func:`ledger.verify_store`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from ._chain import EquivocationProof
from ._entry import Entry
from ._errors import CorruptRowError, LedgerError, LedgerLocalError, LedgerRemoteError
from ._store import LedgerStore

__all__ = ["SqliteLedgerStore", "APPLICATION_ID", "SCHEMA_VERSION", "LEDGER_DB"]

LEDGER_DB = "ledger.db"
"""File name of a node's ledger database inside its home directory."""

APPLICATION_ID = 0x45444C47  # "EDLG"
"""SQLite ``application_id`` of a ledger database."""
SCHEMA_VERSION = 1
"""SQLite ``user_version`` of the current schema."""

_SCHEMA = """
CREATE TABLE entries (
  author BLOB NOT NULL, seq INTEGER NOT NULL, prev BLOB NOT NULL, ts INTEGER NOT NULL,
  kind TEXT NOT NULL, body_hash BLOB NOT NULL, signature BLOB NOT NULL, body BLOB,
  PRIMARY KEY (author, seq)
) WITHOUT ROWID;
CREATE TABLE forks (
  author BLOB NOT NULL, seq INTEGER NOT NULL, proof BLOB NOT NULL, PRIMARY KEY (author, seq)
) WITHOUT ROWID;
"""
_COLS = "author, seq, prev, ts, kind, body_hash, signature, body"
_INSERT = f"INSERT INTO entries ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_SYNC_MODES = ("FULL", "NORMAL", "EXTRA")


def _row_entry(row: Any) -> Entry:
    author, seq = row[0], row[1]
    akey = author if isinstance(author, bytes) else bytes(32)
    aseq = seq if isinstance(seq, int) else 0
    if not isinstance(author, bytes) or len(author) != 32:
        raise CorruptRowError(akey, aseq, "author is not 32 bytes")
    if not isinstance(seq, int):
        raise CorruptRowError(akey, aseq, "seq is not an integer")
    prev, ts, kind, body_hash, signature, body = row[2:8]
    if not isinstance(ts, int) or not isinstance(kind, str):
        raise CorruptRowError(author, seq, "timestamp or kind has the wrong type")
    if not all(isinstance(v, bytes) for v in (prev, body_hash, signature)):
        raise CorruptRowError(author, seq, "prev, body_hash or signature is not a blob")
    if body is not None and not isinstance(body, bytes):
        raise CorruptRowError(author, seq, "body is not a blob")
    try:
        return Entry(author, seq, prev, ts, kind, body_hash, signature, body)
    except LedgerLocalError as exc:
        raise CorruptRowError(author, seq, str(exc)) from exc


class SqliteLedgerStore(LedgerStore):
    """A ledger store in one SQLite file. Create with ``await SqliteLedgerStore.open(path)``."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, readonly: bool) -> None:
        super().__init__()
        self._conn = conn
        self.path = path
        """The database file."""
        self.readonly = readonly
        """Whether the store was opened read-only (writes raise :class:`LedgerLocalError`)."""

    @classmethod
    async def open(cls, path: str | Path, *, readonly: bool = False, synchronous: str = "FULL") -> SqliteLedgerStore:
        """Open (or, unless ``readonly``, create) the ledger database at ``path``.

        Raises :class:`LedgerLocalError` with a one-line reason when the file is missing (read-only),
        is not an SQLite database, is another application's database, or cannot be read.
        """
        path = Path(path)
        if synchronous.upper() not in _SYNC_MODES:
            raise LedgerLocalError(f"synchronous must be one of {_SYNC_MODES}")
        if readonly and not path.is_file():
            raise LedgerLocalError(f"no ledger database at {path}")
        try:
            if readonly:
                conn = await aiosqlite.connect(path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None)
            else:
                conn = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise LedgerLocalError(f"cannot open ledger database {path}: {exc}") from exc
        try:
            await cls._prepare(conn, path, readonly, synchronous.upper())
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path, readonly)

    @staticmethod
    async def _prepare(conn: aiosqlite.Connection, path: Path, readonly: bool, synchronous: str) -> None:
        try:
            app_id = (await _one(conn, "PRAGMA application_id"))[0]
            version = (await _one(conn, "PRAGMA user_version"))[0]
            tables = (await _one(conn, "SELECT count(*) FROM sqlite_master"))[0]
            if app_id == 0 and version == 0 and tables == 0:
                if readonly:
                    raise LedgerLocalError(f"{path} is an empty database, not a ledger")
                await _all(conn, "PRAGMA journal_mode=WAL")
                await conn.executescript(
                    "BEGIN IMMEDIATE;" + _SCHEMA + f"PRAGMA application_id={APPLICATION_ID};"
                    f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
                )
            elif app_id != APPLICATION_ID:
                raise LedgerLocalError(f"{path} is an SQLite database of another application, not a ledger")
            elif version != SCHEMA_VERSION:
                raise LedgerLocalError(f"{path} has ledger schema version {version}; this build reads {SCHEMA_VERSION}")
            elif not readonly:
                await _all(conn, "PRAGMA journal_mode=WAL")
            await _all(conn, f"PRAGMA synchronous={synchronous}")
            # Touch both tables: a truncated or damaged file fails here rather than later.
            await _one(conn, "SELECT count(*) FROM (SELECT 1 FROM entries LIMIT 1)")
            await _one(conn, "SELECT count(*) FROM (SELECT 1 FROM forks LIMIT 1)")
        except sqlite3.Error as exc:
            raise LedgerLocalError(f"{path} is not a readable ledger database: {exc}") from exc

    async def _q(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            async with self._conn.execute(sql, params) as cur:
                return list(await cur.fetchall())
        except (sqlite3.Error, ValueError) as exc:  # aiosqlite: ValueError("Connection closed")
            raise LedgerLocalError(f"ledger database {self.path}: {exc}") from exc

    async def _read_head(self, author: bytes) -> Entry | None:
        rows = await self._q(f"SELECT {_COLS} FROM entries WHERE author = ? ORDER BY seq DESC LIMIT 1", (author,))
        return _row_entry(rows[0]) if rows else None

    async def _read_heads(self) -> dict[bytes, Entry]:
        rows = await self._q(
            f"SELECT {_COLS} FROM entries e WHERE seq = (SELECT max(seq) FROM entries m WHERE m.author = e.author)"
        )
        out: dict[bytes, Entry] = {}
        for row in rows:
            entry = _row_entry(row)
            out[entry.author] = entry
        return out

    async def _read_lengths(self) -> dict[bytes, int]:
        rows = await self._q(
            "SELECT author, max(seq) FROM entries WHERE typeof(author) = 'blob' AND length(author) = 32"
            " AND typeof(seq) = 'integer' GROUP BY author"
        )
        return {bytes(a): int(m) for a, m in rows}

    async def _read_range(self, author: bytes, start: int, end: int) -> list[Entry]:
        rows = await self._q(
            f"SELECT {_COLS} FROM entries WHERE author = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (author, start, min(end, (1 << 63) - 1)),
        )
        return [_row_entry(r) for r in rows]

    async def _write(self, entries: Sequence[Entry]) -> None:
        if self.readonly:
            raise LedgerLocalError(f"ledger database {self.path} is open read-only")
        rows = [(e.author, e.seq, e.prev, e.timestamp_ms, e.kind, e.body_hash, e.signature, e.body) for e in entries]
        try:
            await _all(self._conn, "BEGIN IMMEDIATE")
            try:
                async with self._conn.executemany(_INSERT, rows):
                    pass
                await _all(self._conn, "COMMIT")
            except BaseException:
                await _all(self._conn, "ROLLBACK")
                raise
        except (sqlite3.Error, ValueError) as exc:
            raise LedgerLocalError(f"ledger database {self.path}: write failed: {exc}") from exc

    async def _write_fork(self, proof: EquivocationProof) -> None:
        if self.readonly:
            raise LedgerLocalError(f"ledger database {self.path} is open read-only")
        try:
            await self._q(
                "INSERT OR IGNORE INTO forks (author, seq, proof) VALUES (?, ?, ?)",
                (proof.author, proof.seq, proof.to_bytes()),
            )
        except sqlite3.Error as exc:
            raise LedgerLocalError(f"ledger database {self.path}: write failed: {exc}") from exc

    async def _read_forks(self) -> list[EquivocationProof]:
        out = []
        for author, seq, raw in await self._q("SELECT author, seq, proof FROM forks ORDER BY author, seq"):
            try:
                out.append(EquivocationProof.from_bytes(raw))
            except LedgerRemoteError as exc:
                key = author if isinstance(author, bytes) else bytes(32)
                raise CorruptRowError(key, seq if isinstance(seq, int) else 0, f"stored fork proof: {exc}") from exc
        return out

    async def check_integrity(self) -> list[str]:
        """SQLite's ``PRAGMA quick_check``: empty when the file is sound, else its messages."""
        try:
            rows = await self._q("PRAGMA quick_check")
            bad = await self._q(
                "SELECT count(*) FROM entries WHERE typeof(author) != 'blob' OR length(author) != 32"
                " OR typeof(seq) != 'integer' OR seq < 1"
            )
        except LedgerError as exc:
            return [str(exc)]
        msgs = [str(r[0]) for r in rows]
        problems = [] if msgs == ["ok"] else msgs
        if bad[0][0]:
            problems.append(f"{bad[0][0]} row(s) with a malformed author or seq")
        return problems

    async def _close(self) -> None:
        await self._conn.close()


async def _one(conn: aiosqlite.Connection, sql: str) -> Any:
    async with conn.execute(sql) as cur:
        row = await cur.fetchone()
    if row is None:
        raise LedgerLocalError(f"no result for {sql}")
    return row


async def _all(conn: aiosqlite.Connection, sql: str) -> list[Any]:
    async with conn.execute(sql) as cur:
        return list(await cur.fetchall())
