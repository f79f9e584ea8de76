"""Replication core, sans-IO: what to ask a peer for and what to send it, and applying received entries.

A sync between two nodes: each sends its ``heads()`` (author -> (seq, hash)); each computes
:func:`plan_sync`; each requests the ranges in ``plan.request`` and serves what the other asks
for (``plan.send`` is what the other side will ask of us). Received entries go through
:func:`apply_entries` (pure: decides) and are stored with ``store.append_many`` — or use the
small async helper :func:`receive_entries` that does exactly that.

What a node runs (``edgenode.node``): on a peer's head announcement it pulls that peer's own
chain with a :class:`ChainPull` (which range to ask next, what to store of an answer, when to
stop, which answers are the peer's fault, the witness byte budget), and it answers a peer's
range with :func:`read_range` (:class:`RangeAnswer`: at most ``max_entries`` entries and
``max_bytes`` bytes, never fewer than one entry).  Both are sans-IO: the node moves the bytes
and calls the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ._chain import EquivocationProof, find_equivocation, verify_link
from ._entry import Entry, signature_ok, verify_entry
from ._errors import ChainError, LedgerError
from ._store import LedgerStore
from ._witness import WitnessTable, entry_size, take_within

__all__ = [
    "SyncRange",
    "SyncPlan",
    "plan_sync",
    "ApplyResult",
    "apply_entries",
    "receive_entries",
    "PullStep",
    "ChainPull",
    "RangeAnswer",
    "read_range",
    "stored_bytes",
]

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


# -- pulling one peer's chain (what a node runs on a head announcement) -------------------------


@dataclass(frozen=True)
class PullStep:
    """What to do with one range answer: store ``store`` (``store.append_many``: it verifies,
    refuses a fork with ``ChainError(reason="fork")`` and keeps the proof), report the step with
    :meth:`ChainPull.stored`, then fail with ``error`` if it is set."""

    store: tuple[Entry, ...] = ()
    """Entries to store, in seq order (may include already held ones: duplicates are no-ops)."""
    size: int = 0
    """Their bytes (:func:`entry_size`)."""
    error: str | None = None
    """The peer's fault, in words (undecodable, another author's, a gap, no progress): a remote error."""
    over_budget: bool = False
    """The witness byte budget cut this answer: the chain outgrew it; stop after storing."""
    done: bool = False
    """Nothing more to ask after this step."""


class ChainPull:
    """Pulling ``author``'s chain from a peer, sans-IO.

    Ask :meth:`next_range` (None: done), send it, feed the decoded answer's raw entries to
    :meth:`on_answer`, act on the :class:`PullStep` and report it with :meth:`stored`.  Ranges
    start after ``have`` (the stored head seq) and hold at most ``max_batch`` entries; an answer
    may be cut (by the server's byte cap): the next range follows its last entry, until
    ``height`` (None: until an empty answer).  With ``witness`` the pull is charged to ``peer``'s
    byte budget in that table: an answer is cut to the room left, and a cut one ends the pull
    and exhausts the peer's slot.
    """

    def __init__(
        self,
        author: bytes,
        have: int,
        height: int | None,
        *,
        max_batch: int = 512,
        witness: WitnessTable | None = None,
        peer: str = "",
    ) -> None:
        if max_batch < 1 or have < 0:
            raise ValueError("max_batch must be >= 1 and have >= 0")
        self.author = author
        self.height = height
        self.max_batch = max_batch
        self.witness = witness
        self.peer = peer
        self.start = have + 1
        """The next seq to ask for."""
        self.done = height is not None and self.start > height

    def next_range(self) -> SyncRange | None:
        """The range to ask for next, or None when the pull is over."""
        if self.done:
            return None
        return SyncRange(self.author, self.start, self.start + self.max_batch - 1)

    def on_answer(self, raw: Sequence[bytes]) -> PullStep:
        """Decide what to do with an answer to :meth:`next_range` (entries as sent)."""
        if self.done:
            raise ValueError("the pull is over")
        step = self._decide(raw)
        self.done = step.done
        return step

    def _decide(self, raw: Sequence[bytes]) -> PullStep:
        start = self.start
        try:
            entries = [Entry.from_bytes(b) for b in raw]
        except LedgerError as exc:
            return PullStep(error=f"sent undecodable entries: {exc}", done=True)
        if not entries:
            return PullStep(done=True)
        if any(e.author != self.author for e in entries):
            return PullStep(error="sent another author's entries", done=True)
        if any(e.seq != entries[0].seq + i for i, e in enumerate(entries)):
            return PullStep(error=f"answered range {start} with a gap", done=True)
        over = False
        if self.witness is not None:
            fit = take_within(entries, self.witness.room(self.peer), at_least_one=False)
            over, entries = len(fit) < len(entries), fit
        size = sum(entry_size(e) for e in entries)
        if over:
            return PullStep(tuple(entries), size, over_budget=True, done=True)
        if entries[-1].seq < start:  # only held seqs: checked by the store (a fork raises), no progress
            return PullStep(tuple(entries), size, error=f"answered range {start} with older entries only", done=True)
        self.start = entries[-1].seq + 1
        return PullStep(tuple(entries), size, done=self.height is not None and self.start > self.height)

    def stored(self, step: PullStep) -> None:
        """``step.store`` was stored: charge its bytes to the witness budget (exhausted when over)."""
        if self.witness is None:
            return
        self.witness.charge(self.peer, step.size)
        if step.over_budget:
            self.witness.exhaust(self.peer)


# -- answering a range (what a node serves) ----------------------------------------------------


class RangeAnswer:
    """Filling one range answer of ``author``'s chain, sans-IO: entries ``start..`` up to ``limit``
    (at most ``max_entries``) and ``max_bytes`` bytes, but always at least one entry, so the
    asker makes progress.  Read :meth:`next_read` from the store (None: done), feed it to
    :meth:`on_read`; the answer is ``entries``, and ``cut`` says the byte cap stopped it."""

    def __init__(
        self, author: bytes, start: int, limit: int, *, max_entries: int, max_bytes: int, chunk: int = 8
    ) -> None:
        self.author = author
        self.max_bytes = max_bytes
        self.chunk = max(1, chunk)
        self._next = max(1, start)
        self._end = start + max(0, min(limit, max_entries)) - 1
        self._room = max_bytes
        self.entries: list[Entry] = []
        self.cut = False
        self.done = self._next > self._end

    def next_read(self) -> SyncRange | None:
        """The stored range to read next, or None when the answer is complete."""
        if self.done:
            return None
        return SyncRange(self.author, self._next, min(self._end, self._next + self.chunk - 1))

    def on_read(self, chunk: Sequence[Entry]) -> None:
        """What the store returned for :meth:`next_read`."""
        if not chunk:
            self.done = True
            return
        part = take_within(chunk, self._room, at_least_one=not self.entries)
        self.entries += part
        self._room -= sum(entry_size(e) for e in part)
        if len(part) < len(chunk):
            self.cut = self.done = True
            return
        self._next = chunk[-1].seq + 1
        self.done = self._next > self._end


async def read_range(
    store: LedgerStore, author: bytes, start: int, limit: int, *, max_entries: int, max_bytes: int
) -> RangeAnswer:
    """A :class:`RangeAnswer` filled from ``store``."""
    answer = RangeAnswer(author, start, limit, max_entries=max_entries, max_bytes=max_bytes)
    while (r := answer.next_read()) is not None:
        answer.on_read(await store.range(r.author, r.start, r.end))
    return answer


async def stored_bytes(store: LedgerStore, author: bytes, upto: int, cap: int, *, chunk: int = 8) -> int:
    """Bytes of ``author``'s stored entries 1..``upto``, counted until they pass ``cap``
    (to seed a witness budget with what is already held, e.g. after a restart)."""
    total, seq = 0, 1
    while seq <= upto and total <= cap:
        got = await store.range(author, seq, min(upto, seq + chunk - 1))
        if not got:
            break
        total += sum(entry_size(e) for e in got)
        seq = got[-1].seq + 1
    return total
