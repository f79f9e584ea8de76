"""The exception root of the ``ledger`` package.

Local faults (misuse of the API, an unreadable or corrupt local database) and
remote faults (entries that do not decode, forged signatures, broken chains)
are split, so that a node can penalise the peer that sent bad entries.
"""

from __future__ import annotations

__all__ = [
    "LedgerError",
    "LedgerLocalError",
    "LedgerRemoteError",
    "EntryDecodeError",
    "ChainError",
    "CorruptRowError",
    "InvalidProofError",
    "CHAIN_REASONS",
]

CHAIN_REASONS = (
    "bad_signature",
    "broken_link",
    "gap",
    "fork",
    "time_backwards",
    "bad_body_hash",
    "bad_genesis",
    "malformed",
)
"""Every ``ChainError.reason`` (``malformed``: a stored row that is not an entry at all)."""


class LedgerError(Exception):
    """Root of every error raised by the ledger on purpose."""


class LedgerLocalError(LedgerError):
    """A fault of this process: bad arguments, an unreadable or corrupt database file."""


class LedgerRemoteError(LedgerError):
    """A fault of an entry's author or sender: bytes that do not decode, a chain that does not hold."""


class EntryDecodeError(LedgerRemoteError):
    """Bytes that are not the canonical encoding of an entry (or of a proof, or of a batch)."""


class ChainError(LedgerRemoteError):
    """An entry that does not verify on its own or against its chain.

    ``author`` is the 32-byte public key of the chain, ``seq`` the first sequence
    number at which the chain fails, ``reason`` one of :data:`CHAIN_REASONS`.
    """

    def __init__(self, author: bytes, seq: int, reason: str, detail: str = "") -> None:
        self.author = author
        self.seq = seq
        self.reason = reason
        self.detail = detail
        text = f"chain of {author.hex()[:16]}.. fails at seq {seq}: {reason}"
        super().__init__(f"{text} ({detail})" if detail else text)


class CorruptRowError(LedgerLocalError):
    """A stored row that cannot be rebuilt into an entry (hand-edited types or lengths)."""

    def __init__(self, author: bytes, seq: int, detail: str) -> None:
        self.author = author
        self.seq = seq
        self.detail = detail
        super().__init__(f"stored row {author.hex()[:16]}../{seq} is corrupt: {detail}")


class InvalidProofError(LedgerRemoteError):
    """An equivocation proof that does not prove anything (bad signatures, same entry twice)."""
