"""Verify a whole store: every chain from seq 1, every stored fork proof, the file itself."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._chain import verify_extension
from ._entry import Entry
from ._errors import ChainError, CorruptRowError
from ._store import LedgerStore

__all__ = ["AuthorStatus", "VerifyReport", "verify_store"]


@dataclass(frozen=True)
class AuthorStatus:
    """The verdict on one author's chain."""

    author: bytes
    """The chain's author (32-byte public key)."""
    length: int
    """Seq of the last stored entry."""
    verified: int
    """How many entries from seq 1 verified before the first failure (== length when ok)."""
    first_bad_seq: int | None = None
    """The first seq at which the chain fails, or None when it holds."""
    reason: str | None = None
    """Why it fails: one of ``ledger.CHAIN_REASONS``, or None."""
    detail: str = ""
    """A human hint about the failure."""

    @property
    def ok(self) -> bool:
        """Whether the whole chain holds."""
        return self.reason is None


@dataclass(frozen=True)
class VerifyReport:
    """The verdict on a whole store."""

    authors: tuple[AuthorStatus, ...]
    """One status per author, sorted by author."""
    integrity: tuple[str, ...] = field(default=())
    """Problems of the storage file itself (empty when sound)."""

    @property
    def ok(self) -> bool:
        """True when every chain holds and the file is sound."""
        return not self.integrity and all(a.ok for a in self.authors)

    @property
    def entries(self) -> int:
        """Entries verified in all."""
        return sum(a.verified for a in self.authors)

    @property
    def failures(self) -> tuple[AuthorStatus, ...]:
        """The statuses that are not ok."""
        return tuple(a for a in self.authors if not a.ok)


async def _verify_author(store: LedgerStore, author: bytes, length: int, chunk: int) -> AuthorStatus:
    head: Entry | None = None
    start = 1
    while start <= length:
        end = start + chunk - 1
        try:
            run = await store.range(author, start, end)
        except CorruptRowError as exc:
            good = head.seq if head else 0
            # rows before the corrupt one are fine if they verify; find them one by one
            for seq in range(start, exc.seq):
                try:
                    entry = await store.get(author, seq)
                    if entry is None:
                        return AuthorStatus(author, length, good, seq, "gap", "row missing")
                    head = verify_extension(head, [entry])
                    good = seq
                except ChainError as err:
                    return AuthorStatus(author, length, good, err.seq, err.reason, err.detail)
            return AuthorStatus(author, length, good, exc.seq, "malformed", exc.detail)
        if not run:
            return AuthorStatus(author, length, head.seq if head else 0, start, "gap", "rows missing")
        try:
            for entry in run:
                head = verify_extension(head, [entry])
        except ChainError as err:
            return AuthorStatus(author, length, head.seq if head else 0, err.seq, err.reason, err.detail)
        assert head is not None
        start = head.seq + 1
    return AuthorStatus(author, length, length)


async def verify_store(store: LedgerStore, *, chunk: int = 4096) -> VerifyReport:
    """Verify every chain in ``store`` from seq 1 and the fork proofs it holds.

    An author with a stored equivocation proof is reported as ``fork`` at the forked seq
    (when its stored chain does not fail earlier). Never raises for bad content; raises
    :class:`LedgerLocalError` only when the store cannot be read at all.
    """
    integrity = tuple(await store.check_integrity())
    try:
        lengths = await store.lengths()
        forks: dict[bytes, int] = {}
        for proof in await store.forks():
            forks.setdefault(proof.author, proof.seq)
    except CorruptRowError as exc:
        status = AuthorStatus(exc.author, exc.seq, 0, exc.seq, "malformed", exc.detail)
        return VerifyReport((status,), integrity)
    statuses: list[AuthorStatus] = []
    for author in sorted(set(lengths) | set(forks)):
        length = lengths.get(author, 0)
        status = await _verify_author(store, author, length, chunk)
        fork_seq = forks.get(author)
        if fork_seq is not None and (status.first_bad_seq is None or fork_seq < status.first_bad_seq):
            status = AuthorStatus(
                author, length, min(status.verified, fork_seq - 1), fork_seq, "fork", "equivocation proof held"
            )
        statuses.append(status)
    return VerifyReport(tuple(statuses), integrity)
