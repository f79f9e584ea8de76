"""Replication core, sans-IO: what to ask a peer for and what to send it, and applying received entries.

A sync between two nodes: each sends its ``heads()`` (author -> (seq, hash)); each computes
:func:`plan_sync`; each requests the ranges in ``plan.request`` and serves what the other asks
for (``plan.send`` is what the other side will ask of us). Received entries go through
:func:`apply_entries` (pure: decides) and are stored with ``store.append_many`` — or use the
small async helper :func:`receive_entries` that does exactly that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ._chain import EquivocationProof, find_equivocation, verify_link
from ._entry import Entry, signature_ok, verify_entry
from ._errors import ChainError
from ._store import LedgerStore

__all__ = ["SyncRange", "SyncPlan", "plan_sync", "ApplyResult", "apply_entries", "receive_entries"]

Heads = Mapping[bytes, tuple[int, bytes]]


@dataclass(frozen=True, order=True)
class SyncRange:
    """Entries ``start..end`` (inclusive) of ``author``."""

    author: bytes
    """The chain's author (32-byte public key)."""
    start: int
    """First seq, from 1."""
    end: int
    """Last seq, inclusive."""


@dataclass(frozen=True)
class SyncPlan:
    """What one side of a sync does."""

    request: tuple[SyncRange, ...]
    """Ranges to ask the peer for (it has entries we lack)."""
    send: tuple[SyncRange, ...]
    """Ranges the peer lacks (it will ask us for them)."""
    suspect_forks: tuple[bytes, ...]
    """Authors whose heads are at one seq with different hashes: one side holds a fork.
    The overlap entry is included in ``request`` so the fork can be proven."""


def _split(author: bytes, start: int, end: int, max_batch: int) -> list[SyncRange]:
    return [SyncRange(author, s, min(s + max_batch - 1, end)) for s in range(start, end + 1, max_batch)]


def plan_sync(mine: Heads, theirs: Heads, *, max_batch: int = 1000, overlap: int = 1) -> SyncPlan:
    """Compare two ``heads()`` maps and decide which ranges move which way.

    Each range starts ``overlap`` entries below the receiver's head (default 1), so the
    receiver sees the entry it already holds again: identical (a no-op) or different (a
    fork, proven on arrival). Ranges are cut into pieces of at most ``max_batch`` entries.
    """
    if max_batch < 1 or overlap < 0:
        raise ValueError("max_batch must be >= 1 and overlap >= 0")
    request: list[SyncRange] = []
    send: list[SyncRange] = []
    forks: list[bytes] = []
    for author in sorted(set(mine) | set(theirs)):
        my_seq, my_hash = mine.get(author, (0, b""))
        their_seq, their_hash = theirs.get(author, (0, b""))
        if their_seq > my_seq:
            request += _split(author, max(1, my_seq + 1 - overlap), their_seq, max_batch)
        elif my_seq > their_seq:
            send += _split(author, max(1, their_seq + 1 - overlap), my_seq, max_batch)
        elif my_seq > 0 and my_hash != their_hash:
            forks.append(author)
            request.append(SyncRange(author, my_seq, my_seq))
    return SyncPlan(tuple(request), tuple(send), tuple(forks))


@dataclass
class ApplyResult:
    """What :func:`apply_entries` decided."""

    accepted: list[Entry] = field(default_factory=list)
    """Verified entries that extend their chains, in order: store these."""
    duplicates: int = 0
    """Entries already held (same hash)."""
    rejected: list[tuple[Entry, ChainError]] = field(default_factory=list)
    """Entries that failed, with why; an author's later entries in the batch are rejected too."""
    proofs: list[EquivocationProof] = field(default_factory=list)
    """Forks proven by this batch."""
    repairs: list[Entry] = field(default_factory=list)
    """Verified entries at seqs below the head that ``known`` lacks: candidates to fill rows lost
    locally (``store.append_many`` stores them only if they fit between their stored neighbours)."""

    @property
    def ok(self) -> bool:
        """True when nothing was rejected and no fork was found."""
        return not self.rejected and not self.proofs


def apply_entries(
    heads: Mapping[bytes, Entry | None], known: Mapping[tuple[bytes, int], Entry], entries: Iterable[Entry]
) -> ApplyResult:
    """Decide, verifying everything first, which received entries to store. Pure.

    ``heads``: the stored head entry of each author in the batch (None or absent: none yet).
    ``known``: stored entries at the seqs in the batch that are at or below their author's head
    (for duplicates and forks); a seq below the head that ``known`` lacks is taken for a lost
    row, and its entry, if it verifies on its own, goes to ``repairs``. Per author, entries are
    taken in seq order; the valid run that extends the head is accepted, and the first failure
    stops that author's run.
    """
    result = ApplyResult()
    by_author: dict[bytes, list[Entry]] = {}
    for entry in entries:
        by_author.setdefault(entry.author, []).append(entry)
    for author, run in by_author.items():
        head = heads.get(author)
        seen: dict[int, Entry] = {}
        failed: ChainError | None = None
        for entry in sorted(run, key=lambda e: e.seq):
            if failed is not None:
                result.rejected.append((entry, failed))
                continue
            other = seen.get(entry.seq) or known.get((author, entry.seq))
            if other is None and head is not None and entry.seq == head.seq:
                other = head
            if other is not None:
                if other.hash == entry.hash:
                    result.duplicates += 1
                    continue
                proof = find_equivocation(other, entry)
                if proof is not None:
                    result.proofs.append(proof)
                    failed = ChainError(author, entry.seq, "fork", "two signed entries at one seq")
                elif not signature_ok(entry):
                    failed = ChainError(author, entry.seq, "bad_signature")
                else:
                    failed = ChainError(author, entry.seq, "fork")
                result.rejected.append((entry, failed))
                continue
            if head is not None and entry.seq <= head.seq:
                # no stored row at this seq: it may fill a hole (the store checks its neighbours)
                try:
                    verify_entry(entry)
                except ChainError as exc:
                    result.rejected.append((entry, exc))
                else:
                    result.repairs.append(entry)
                continue
            try:
                verify_link(head, entry)
                verify_entry(entry)
            except ChainError as exc:
                failed = exc
                result.rejected.append((entry, exc))
                continue
            result.accepted.append(entry)
            seen[entry.seq] = entry
            head = entry
    return result


async def receive_entries(store: LedgerStore, entries: Iterable[Entry]) -> ApplyResult:
    """Apply received entries to ``store``: gather its view, :func:`apply_entries`, store the result.

    Stores only verified entries (one transaction) and keeps any equivocation proofs found.
    """
    batch = list(entries)
    heads: dict[bytes, Entry | None] = {}
    known: dict[tuple[bytes, int], Entry] = {}
    for entry in batch:
        if entry.author not in heads:
            heads[entry.author] = await store.head(entry.author)
        head = heads[entry.author]
        key = (entry.author, entry.seq)
        if head is not None and entry.seq < head.seq and key not in known:
            stored = await store.get(entry.author, entry.seq)
            if stored is not None:
                known[key] = stored
    result = apply_entries(heads, known, batch)
    for proof in result.proofs:
        await store.add_fork(proof)
    if result.accepted:
        await store.append_many(result.accepted)
    if result.repairs:
        try:
            await store.append_many(result.repairs)
        except ChainError as exc:
            result.rejected += [(e, exc) for e in result.repairs]
            result.repairs = []
    return result
