"""Pure chain logic: verify runs of entries, detect forks, self-contained equivocation proofs."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._entry import Entry, decode_entry_prefix, signature_ok, verify_entry
from ._errors import ChainError, EntryDecodeError, InvalidProofError

__all__ = [
    "verify_link",
    "verify_extension",
    "verify_chain",
    "find_equivocation",
    "EquivocationProof",
    "encode_entries",
    "decode_entries",
    "MAX_BATCH_ENTRIES",
]

MAX_BATCH_ENTRIES = 100_000
"""Most entries :func:`decode_entries` accepts in one batch."""
_U32 = struct.Struct(">I")
_PROOF_VERSION = 1


def verify_link(prev: Entry | None, entry: Entry) -> None:
    """Check that ``entry`` directly follows ``prev`` (None: that it is a first entry). Signature not checked.

    Reasons: ``gap`` (seq does not follow), ``fork`` (seq at or below prev's), ``broken_link``
    (prev hash differs), ``time_backwards``, ``bad_genesis``.
    """
    if prev is None:
        if entry.seq != 1:
            raise ChainError(entry.author, 1, "gap", f"chain starts at seq {entry.seq}")
        if entry.prev != bytes(32):
            raise ChainError(entry.author, 1, "bad_genesis", "seq 1 must have an all-zero prev")
        return
    if entry.author != prev.author:
        raise ChainError(entry.author, entry.seq, "broken_link", "entry of another author")
    if entry.seq <= prev.seq:
        raise ChainError(entry.author, entry.seq, "fork", f"seq {entry.seq} after seq {prev.seq}")
    if entry.seq != prev.seq + 1:
        raise ChainError(entry.author, prev.seq + 1, "gap", f"seq {prev.seq} is followed by {entry.seq}")
    if entry.prev != prev.hash:
        raise ChainError(entry.author, entry.seq, "broken_link", "prev is not the hash of the previous entry")
    if entry.timestamp_ms < prev.timestamp_ms:
        raise ChainError(entry.author, entry.seq, "time_backwards", f"{entry.timestamp_ms} < {prev.timestamp_ms}")


def verify_extension(head: Entry | None, entries: Iterable[Entry]) -> Entry | None:
    """Verify that ``entries`` (one author, in order) continue the chain whose last entry is ``head``.

    ``head=None`` means the run must start at seq 1. Every entry is verified on its own
    (:func:`verify_entry`) and linked to the one before. Returns the new head. Raises
    :class:`ChainError` at the first failure.
    """
    for entry in entries:
        verify_link(head, entry)
        verify_entry(entry)
        head = entry
    return head


def verify_chain(entries: Iterable[Entry]) -> None:
    """Verify whole chains: entries of any authors, each author's in seq order from seq 1.

    Raises :class:`ChainError` naming the author, the first bad seq and the reason.
    """
    heads: dict[bytes, Entry] = {}
    for entry in entries:
        head = heads.get(entry.author)
        verify_link(head, entry)
        verify_entry(entry)
        heads[entry.author] = entry


def find_equivocation(a: Entry, b: Entry) -> EquivocationProof | None:
    """A proof that ``a`` and ``b`` are two validly signed, different entries of one author at one seq.

    Returns None when they are not (another author, another seq, the same entry, or a bad signature).
    """
    if a.author != b.author or a.seq != b.seq or a.hash == b.hash:
        return None
    if not (signature_ok(a) and signature_ok(b)):
        return None
    return EquivocationProof.of(a, b)


@dataclass(frozen=True)
class EquivocationProof:
    """Two signed headers of one author at one seq with different hashes: the author forked its chain.

    Self-contained: any peer can check it with :meth:`verify`, knowing nothing else.
    The pair is kept in hash order, so one fork has one proof.
    """

    first: Entry
    """The entry with the smaller hash (body dropped)."""
    second: Entry
    """The entry with the larger hash (body dropped)."""

    @classmethod
    def of(cls, a: Entry, b: Entry) -> EquivocationProof:
        """Build the canonical proof from two entries (not verified: call :meth:`verify`)."""
        a, b = a.without_body(), b.without_body()
        return cls(a, b) if a.hash < b.hash else cls(b, a)

    @property
    def author(self) -> bytes:
        """The author that equivocated."""
        return self.first.author

    @property
    def seq(self) -> int:
        """The seq at which the chain forked."""
        return self.first.seq

    def verify(self) -> None:
        """Raise :class:`InvalidProofError` unless this proves an equivocation."""
        a, b = self.first, self.second
        if a.author != b.author or a.seq != b.seq:
            raise InvalidProofError("the two entries are not of one author at one seq")
        if a.hash == b.hash:
            raise InvalidProofError("the two entries are the same entry")
        if not (signature_ok(a) and signature_ok(b)):
            raise InvalidProofError("a signature in the proof does not verify")

    def to_bytes(self) -> bytes:
        """Canonical bytes: version u8 | len u32 | first | len u32 | second (entries without bodies)."""
        fa, fb = self.first.to_bytes(with_body=False), self.second.to_bytes(with_body=False)
        return bytes([_PROOF_VERSION]) + _U32.pack(len(fa)) + fa + _U32.pack(len(fb)) + fb

    @classmethod
    def from_bytes(cls, data: bytes) -> EquivocationProof:
        """Decode and verify; total: returns a valid proof or raises a :class:`LedgerRemoteError`."""
        if not isinstance(data, bytes) or len(data) < 1 or data[0] != _PROOF_VERSION:
            raise EntryDecodeError("not an equivocation proof (bad version)")
        entries = _decode_framed(data, 1, 2)
        proof = cls(entries[0], entries[1])
        if proof.first.hash >= proof.second.hash:
            raise EntryDecodeError("proof entries are not in canonical hash order")
        if proof.first.body is not None or proof.second.body is not None:
            raise EntryDecodeError("proof entries carry bodies")
        proof.verify()
        return proof


def _decode_framed(data: bytes, offset: int, expect: int | None) -> list[Entry]:
    out: list[Entry] = []
    pos = offset
    while pos < len(data):
        if expect is not None and len(out) >= expect:
            raise EntryDecodeError("trailing bytes after the last entry")
        if len(data) - pos < 4:
            raise EntryDecodeError("truncated frame length")
        (size,) = _U32.unpack_from(data, pos)
        pos += 4
        end = pos + size
        if end > len(data):
            raise EntryDecodeError("truncated frame")
        entry, stop = decode_entry_prefix(data[pos:end], 0)
        if stop != size:
            raise EntryDecodeError("frame length does not match its entry")
        out.append(entry)
        pos = end
    if expect is not None and len(out) != expect:
        raise EntryDecodeError(f"expected {expect} entries, got {len(out)}")
    return out


def encode_entries(entries: Sequence[Entry], *, with_body: bool = True) -> bytes:
    """A batch of entries for the wire: count u32 | (len u32 | entry)*."""
    if len(entries) > MAX_BATCH_ENTRIES:
        raise ValueError(f"at most {MAX_BATCH_ENTRIES} entries per batch")
    parts = [_U32.pack(len(entries))]
    for entry in entries:
        raw = entry.to_bytes(with_body=with_body)
        parts.append(_U32.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def decode_entries(data: bytes) -> list[Entry]:
    """Decode :func:`encode_entries` output; total: a list or :class:`EntryDecodeError`. Not verified."""
    if not isinstance(data, bytes) or len(data) < 4:
        raise EntryDecodeError("truncated entry batch")
    (count,) = _U32.unpack_from(data, 0)
    if count > MAX_BATCH_ENTRIES:
        raise EntryDecodeError(f"batch of {count} entries is over the limit")
    return _decode_framed(data, 4, count)
