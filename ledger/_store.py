"""The ``LedgerStore`` interface, its shared checking logic, and the in-memory store.

Every store verifies what it is given before keeping it: an entry is stored only when
its signature holds and it extends the stored head of its author. Subclasses provide
a few storage primitives; the checking lives here once, so every store behaves alike.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Self

from ._chain import EquivocationProof, verify_extension, verify_link
from ._entry import Entry, signature_ok, verify_body, verify_entry
from ._errors import ChainError, LedgerLocalError

__all__ = ["LedgerStore", "MemoryLedgerStore"]


class LedgerStore(ABC):
    """Per-author chains of verified entries, plus the equivocation proofs seen.

    Writes are serialised by an asyncio lock; a write is durable when its call returns.
    A store is an async context manager that closes it: ``async with await SqliteLedgerStore.open(p) as s:``.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._heads: dict[bytes, Entry | None] = {}
        self._closed = False

    # ---- primitives for subclasses -------------------------------------------------
    @abstractmethod
    async def _read_head(self, author: bytes) -> Entry | None:
        """The stored entry with the highest seq of ``author``."""

    @abstractmethod
    async def _read_heads(self) -> dict[bytes, Entry]:
        """The head entry of every author."""

    @abstractmethod
    async def _read_lengths(self) -> dict[bytes, int]:
        """author -> highest stored seq, without decoding any row."""

    @abstractmethod
    async def _read_range(self, author: bytes, start: int, end: int) -> list[Entry]:
        """Stored entries of ``author`` with ``start <= seq <= end``, in seq order."""

    @abstractmethod
    async def _write(self, entries: Sequence[Entry]) -> None:
        """Store ``entries`` in one transaction, durably, all or none."""

    @abstractmethod
    async def _write_fork(self, proof: EquivocationProof) -> None:
        """Keep ``proof`` (idempotent: one proof per author and seq)."""

    @abstractmethod
    async def _read_forks(self) -> list[EquivocationProof]:
        """Every proof kept."""

    @abstractmethod
    async def _close(self) -> None:
        """Release resources."""

    async def check_integrity(self) -> list[str]:
        """Problems of the storage itself (e.g. SQLite's quick_check); empty when sound."""
        return []

    # ---- public API --------------------------------------------------------------
    async def append(self, entry: Entry) -> bool:
        """Verify ``entry`` and store it after its author's head; durable when this returns.

        Returns False when the very same entry is already stored (idempotent). Raises
        :class:`ChainError` when it does not verify or does not extend the head; when it is a
        validly signed second entry at a stored seq, the equivocation proof is kept (see
        :meth:`forks`) and ``ChainError(reason="fork")`` raised.
        """
        return await self.append_many([entry]) == 1

    async def append_many(self, entries: Iterable[Entry], *, own_signatures: bool = False) -> int:
        """Verify and store many entries (any authors, each author's in order) in one transaction.

        All or nothing: the first entry that fails raises :class:`ChainError` and nothing is stored
        (a fork's proof is still kept). Entries already stored are skipped. Entries that fill rows
        missing below a head (lost locally, re-sent by a peer) are stored when they fit exactly
        between their stored neighbours. Returns how many were new.

        ``own_signatures=True`` is for the entries a :class:`~ledger.Ledger` has just signed itself
        with a key it checked: their signatures are not checked again (links, seq, time and body
        hashes still are). Never pass it for entries received from elsewhere.
        """
        batch = list(entries)
        async with self._lock:
            self._check_open()
            heads: dict[bytes, Entry | None] = {}
            to_write: list[Entry] = []
            holes: dict[bytes, dict[int, Entry]] = {}
            for entry in batch:
                if entry.author not in heads:
                    heads[entry.author] = await self._head_locked(entry.author)
                head = heads[entry.author]
                if head is not None and entry.seq <= head.seq:
                    if not await self._known_seq(entry, head, to_write):
                        holes.setdefault(entry.author, {})[entry.seq] = entry
                    continue
                verify_link(head, entry)
                if own_signatures:
                    verify_body(entry)
                else:
                    verify_entry(entry)
                to_write.append(entry)
                heads[entry.author] = entry
            for author_holes in holes.values():
                to_write += await self._fill_holes(author_holes)
            if to_write:
                await self._write(to_write)
                self._heads.update(heads)
            return len(to_write)

    async def _known_seq(self, entry: Entry, head: Entry, pending: list[Entry]) -> bool:
        """``entry`` sits at a seq already stored (or pending): a duplicate (True), a fork, a forgery.

        Returns False when no row is stored at that seq (a hole left by a lost row).
        """
        stored = next((p for p in pending if p.author == entry.author and p.seq == entry.seq), None)
        if stored is None and head.seq == entry.seq:
            stored = head
        if stored is None:
            found = await self._read_range(entry.author, entry.seq, entry.seq)
            if not found:
                return False
            stored = found[0]
        if stored.hash == entry.hash:
            return True
        if not signature_ok(entry):
            raise ChainError(entry.author, entry.seq, "bad_signature")
        await self._write_fork(EquivocationProof.of(stored, entry))
        raise ChainError(entry.author, entry.seq, "fork", "a different entry is stored at this seq")

    async def _fill_holes(self, holes: dict[int, Entry]) -> list[Entry]:
        """Entries for rows missing below the head (lost rows re-sent by a peer), checked in place.

        Each contiguous run must verify, link to the stored entry before it and be linked to by
        the stored entry after it; otherwise nothing is stored.
        """
        seqs = sorted(holes)
        runs: list[list[Entry]] = []
        for seq in seqs:
            if runs and runs[-1][-1].seq == seq - 1:
                runs[-1].append(holes[seq])
            else:
                runs.append([holes[seq]])
        out: list[Entry] = []
        for run in runs:
            first, last = run[0], run[-1]
            before = None
            if first.seq > 1:
                found = await self._read_range(first.author, first.seq - 1, first.seq - 1)
                if not found:
                    raise ChainError(first.author, first.seq - 1, "gap", "cannot fill: the row before is missing")
                before = found[0]
            after = await self._read_range(last.author, last.seq + 1, last.seq + 1)
            if not after:
                raise ChainError(last.author, last.seq + 1, "gap", "cannot fill: the row after is missing")
            verify_extension(before, run)
            verify_link(last, after[0])
            out += run
        return out

    async def _head_locked(self, author: bytes) -> Entry | None:
        if author not in self._heads:
            self._heads[author] = await self._read_head(author)
        return self._heads[author]

    async def head(self, author: bytes) -> Entry | None:
        """The last entry of ``author``'s chain, or None when none is stored."""
        self._check_open()
        async with self._lock:
            return await self._head_locked(author)

    async def heads(self) -> dict[bytes, tuple[int, bytes]]:
        """author -> (seq, hash) of its last stored entry, for every author."""
        self._check_open()
        return {author: (e.seq, e.hash) for author, e in (await self._read_heads()).items()}

    async def lengths(self) -> dict[bytes, int]:
        """author -> highest stored seq. Decodes no row, so it works on a damaged store too."""
        self._check_open()
        return await self._read_lengths()

    async def get(self, author: bytes, seq: int) -> Entry | None:
        """The entry of ``author`` at ``seq``, or None."""
        self._check_open()
        found = await self._read_range(author, seq, seq)
        return found[0] if found else None

    async def range(self, author: bytes, start: int, end: int) -> list[Entry]:
        """Stored entries of ``author`` with ``start <= seq <= end`` (inclusive), in seq order."""
        self._check_open()
        if start > end:
            return []
        return await self._read_range(author, max(start, 1), end)

    async def authors(self) -> list[bytes]:
        """Every author with at least one stored entry, sorted."""
        self._check_open()
        return sorted((await self._read_heads()).keys())

    async def add_fork(self, proof: EquivocationProof) -> None:
        """Keep an equivocation proof received from elsewhere, after checking it."""
        self._check_open()
        proof.verify()
        async with self._lock:
            self._check_open()
            await self._write_fork(proof)

    async def forks(self) -> list[EquivocationProof]:
        """Every equivocation proof seen, sorted by (author, seq)."""
        self._check_open()
        return sorted(await self._read_forks(), key=lambda p: (p.author, p.seq))

    async def close(self) -> None:
        """Close the store; later calls raise :class:`LedgerLocalError`. Idempotent.

        Takes the write lock: a write in flight completes (or fails) first, and none starts after.
        """
        if self._closed:
            return
        async with self._lock:
            if not self._closed:
                self._closed = True
                await self._close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise LedgerLocalError("the ledger store is closed")


class MemoryLedgerStore(LedgerStore):
    """A store in a dict: for tests and the simulator. Not durable past the process."""

    def __init__(self) -> None:
        super().__init__()
        self._chains: dict[bytes, list[Entry]] = {}
        self._proofs: dict[tuple[bytes, int], EquivocationProof] = {}

    async def _read_head(self, author: bytes) -> Entry | None:
        chain = self._chains.get(author)
        return chain[-1] if chain else None

    async def _read_heads(self) -> dict[bytes, Entry]:
        return {a: c[-1] for a, c in self._chains.items() if c}

    async def _read_lengths(self) -> dict[bytes, int]:
        return {a: c[-1].seq for a, c in self._chains.items() if c}

    async def _read_range(self, author: bytes, start: int, end: int) -> list[Entry]:
        chain = self._chains.get(author, [])
        return chain[max(start, 1) - 1 : max(end, 0)]

    async def _write(self, entries: Sequence[Entry]) -> None:
        lengths: dict[bytes, int] = {}
        for entry in entries:
            n = lengths.get(entry.author, len(self._chains.get(entry.author, [])))
            if entry.seq != n + 1:  # the checks before _write never let this happen
                raise LedgerLocalError(f"memory store: seq {entry.seq} after {n}")
            lengths[entry.author] = entry.seq
        for entry in entries:
            self._chains.setdefault(entry.author, []).append(entry)

    async def _write_fork(self, proof: EquivocationProof) -> None:
        self._proofs.setdefault((proof.author, proof.seq), proof)

    async def _read_forks(self) -> list[EquivocationProof]:
        return list(self._proofs.values())

    async def _close(self) -> None:
        self._chains.clear()
