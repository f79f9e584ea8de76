"""Ledger entries: canonical bytes, signing and verification of one entry.

An entry is a fixed-layout header signed by its author plus an optional body::

    header    = version u8 | author 32 | seq u64 | prev 32 | timestamp_ms i64
                | body_hash 32 | kind_len u8 | kind (ascii)
    signed    = DOMAIN | header            (Ed25519 over these bytes)
    entry     = header | signature 64 | has_body u8 | [body_len u32 | body]
    hash      = sha256(header | signature)

All integers are big-endian. The hash does not cover the body directly, only
through ``body_hash``, so a chain can be kept and verified without its bodies.
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
from dataclasses import dataclass, field
from typing import Protocol

import nacl.bindings
import nacl.exceptions

from ._errors import ChainError, EntryDecodeError, LedgerLocalError

__all__ = [
    "Signer",
    "Entry",
    "build_entry",
    "verify_entry",
    "verify_body",
    "signature_ok",
    "ENTRY_VERSION",
    "ZERO_HASH",
    "MAX_BODY_BYTES",
    "MAX_KIND_BYTES",
    "SIGN_DOMAIN",
]

ENTRY_VERSION = 1
"""The version byte that starts every entry header."""
ZERO_HASH = bytes(32)
"""The ``prev`` of an author's first entry (seq 1)."""
MAX_BODY_BYTES = 1 << 20
"""Largest body an entry may carry inline (bigger payloads go to blobs, named by hash)."""
MAX_KIND_BYTES = 64
"""Longest ``kind`` string."""
SIGN_DOMAIN = b"edgenode/ledger/entry/v1\x00"
"""Prefix of every signed message, so an entry signature can never be replayed as another kind of signature."""
MAX_SEQ = (1 << 63) - 1
_KIND_RE = re.compile(rb"[a-z0-9][a-z0-9_.:\-]*\Z")
_FIXED = struct.Struct(">B32sQ32sq32sB")  # version, author, seq, prev, ts, body_hash, kind_len
_U32 = struct.Struct(">I")


class Signer(Protocol):
    """What the ledger needs of a key: ``edgenode.identity.Identity`` is one."""

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        ...

    def sign(self, data: bytes) -> bytes:
        """A 64-byte detached Ed25519 signature of ``data``."""
        ...


@functools.lru_cache(maxsize=256)
def _check_kind(kind: str) -> bytes:
    raw = kind.encode("utf-8", "replace")
    if not 1 <= len(raw) <= MAX_KIND_BYTES or _KIND_RE.match(raw) is None:
        raise ValueError(f"kind must be 1..{MAX_KIND_BYTES} chars of [a-z0-9_.:-], got {kind!r}")
    return raw


@dataclass(frozen=True)
class Entry:
    """One signed entry of an author's chain. Immutable; equal when all fields are equal."""

    author: bytes
    """The author's raw 32-byte Ed25519 public key."""
    seq: int
    """Position in the author's chain, from 1."""
    prev: bytes
    """sha256 hash of the previous entry (``ZERO_HASH`` for seq 1)."""
    timestamp_ms: int
    """The author's clock when it wrote the entry, ms since the Unix epoch; never decreases along a chain."""
    kind: str
    """What the entry records: ``task_result``, ``model_update``, ``genesis``... ([a-z0-9_.:-], 1..64 chars)."""
    body_hash: bytes
    """sha256 of the body."""
    signature: bytes
    """Ed25519 signature of ``SIGN_DOMAIN + header`` by ``author``."""
    body: bytes | None = None
    """The body itself, or None when only its hash is kept."""
    header: bytes = field(init=False, repr=False, compare=False)
    """The canonical signed header bytes (derived)."""
    hash: bytes = field(init=False, repr=False, compare=False)
    """sha256(header + signature): the entry's name, what the next entry's ``prev`` holds (derived)."""

    def __post_init__(self) -> None:
        try:
            kind = _check_kind(self.kind)
        except ValueError as exc:
            raise LedgerLocalError(str(exc)) from exc
        for name, value, size in (
            ("author", self.author, 32),
            ("prev", self.prev, 32),
            ("body_hash", self.body_hash, 32),
            ("signature", self.signature, 64),
        ):
            if not isinstance(value, bytes) or len(value) != size:
                raise LedgerLocalError(f"entry {name} must be {size} bytes")
        if not 1 <= self.seq <= MAX_SEQ:
            raise LedgerLocalError(f"entry seq must be in 1..2**63-1, got {self.seq}")
        if not -(1 << 63) <= self.timestamp_ms < (1 << 63):
            raise LedgerLocalError("entry timestamp_ms out of the i64 range")
        if self.body is not None and len(self.body) > MAX_BODY_BYTES:
            raise LedgerLocalError(f"entry body over {MAX_BODY_BYTES} bytes")
        header = (
            _FIXED.pack(ENTRY_VERSION, self.author, self.seq, self.prev, self.timestamp_ms, self.body_hash, len(kind))
            + kind
        )
        object.__setattr__(self, "header", header)
        object.__setattr__(self, "hash", hashlib.sha256(header + self.signature).digest())

    def to_bytes(self, *, with_body: bool = True) -> bytes:
        """The canonical bytes; ``with_body=False`` leaves the body out (the hash stays the same)."""
        if with_body and self.body is not None:
            return self.header + self.signature + b"\x01" + _U32.pack(len(self.body)) + self.body
        return self.header + self.signature + b"\x00"

    def without_body(self) -> Entry:
        """The same entry with its body dropped (same hash, same signature)."""
        if self.body is None:
            return self
        return Entry(
            self.author, self.seq, self.prev, self.timestamp_ms, self.kind, self.body_hash, self.signature, None
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry:
        """Decode canonical bytes; total: returns an entry or raises :class:`EntryDecodeError`.

        Only the layout is checked here; :func:`verify_entry` checks the signature and body hash.
        """
        entry, end = decode_entry_prefix(data, 0)
        if end != len(data):
            raise EntryDecodeError(f"{len(data) - end} trailing bytes after the entry")
        return entry


def decode_entry_prefix(data: bytes, offset: int) -> tuple[Entry, int]:
    """Decode one entry starting at ``offset``; return it and the offset just past it."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EntryDecodeError("entry bytes expected")
    data = bytes(data)
    if len(data) - offset < _FIXED.size:
        raise EntryDecodeError("truncated entry header")
    version, author, seq, prev, ts, body_hash, kind_len = _FIXED.unpack_from(data, offset)
    if version != ENTRY_VERSION:
        raise EntryDecodeError(f"unknown entry version {version}")
    pos = offset + _FIXED.size
    kind_raw = data[pos : pos + kind_len]
    pos += kind_len
    if len(kind_raw) != kind_len:
        raise EntryDecodeError("truncated entry kind")
    if not 1 <= kind_len <= MAX_KIND_BYTES or _KIND_RE.match(kind_raw) is None:
        raise EntryDecodeError("entry kind is not 1..64 chars of [a-z0-9_.:-]")
    if not 1 <= seq <= MAX_SEQ:
        raise EntryDecodeError(f"entry seq {seq} out of range")
    signature = data[pos : pos + 64]
    pos += 64
    if len(signature) != 64 or len(data) <= pos:
        raise EntryDecodeError("truncated entry signature")
    flag = data[pos]
    pos += 1
    body: bytes | None = None
    if flag == 1:
        if len(data) - pos < 4:
            raise EntryDecodeError("truncated entry body length")
        (size,) = _U32.unpack_from(data, pos)
        pos += 4
        if size > MAX_BODY_BYTES:
            raise EntryDecodeError(f"entry body of {size} bytes is over the limit")
        body = data[pos : pos + size]
        pos += size
        if len(body) != size:
            raise EntryDecodeError("truncated entry body")
    elif flag != 0:
        raise EntryDecodeError(f"bad body flag {flag}")
    header = data[offset : offset + _FIXED.size + kind_len]
    entry = _assemble(author, seq, prev, ts, kind_raw.decode("ascii"), body_hash, signature, body, header)
    return entry, pos


def build_entry(signer: Signer, prev: Entry | None, kind: str, body: bytes, timestamp_ms: int) -> Entry:
    """Build and sign the entry that follows ``prev`` (``None``: the author's first entry, seq 1).

    Raises :class:`LedgerLocalError` when ``prev`` is another author's or ``timestamp_ms`` is before it.
    """
    author = signer.public_key
    if prev is None:
        seq, prev_hash = 1, ZERO_HASH
    else:
        if prev.author != author:
            raise LedgerLocalError("prev belongs to another author")
        if timestamp_ms < prev.timestamp_ms:
            raise LedgerLocalError(f"timestamp {timestamp_ms} is before the previous entry's {prev.timestamp_ms}")
        seq, prev_hash = prev.seq + 1, prev.hash
    try:
        kind_raw = _check_kind(kind)
    except ValueError as exc:
        raise LedgerLocalError(str(exc)) from exc
    if len(body) > MAX_BODY_BYTES:
        raise LedgerLocalError(f"entry body over {MAX_BODY_BYTES} bytes")
    if len(author) != 32:
        raise LedgerLocalError("the signer's public key must be 32 bytes")
    body_hash = hashlib.sha256(body).digest()
    try:
        header = _FIXED.pack(ENTRY_VERSION, author, seq, prev_hash, timestamp_ms, body_hash, len(kind_raw)) + kind_raw
    except struct.error as exc:
        raise LedgerLocalError(f"entry field out of range: {exc}") from exc
    signature = bytes(signer.sign(SIGN_DOMAIN + header))
    if len(signature) != 64:
        raise LedgerLocalError("the signer returned a signature that is not 64 bytes")
    return _assemble(author, seq, prev_hash, timestamp_ms, kind, body_hash, signature, bytes(body), header)


def _assemble(
    author: bytes,
    seq: int,
    prev: bytes,
    timestamp_ms: int,
    kind: str,
    body_hash: bytes,
    signature: bytes,
    body: bytes | None,
    header: bytes,
) -> Entry:
    """Make an entry from fields already checked and their header (skips ``__post_init__``)."""
    entry = object.__new__(Entry)
    put = object.__setattr__
    put(entry, "author", author)
    put(entry, "seq", seq)
    put(entry, "prev", prev)
    put(entry, "timestamp_ms", timestamp_ms)
    put(entry, "kind", kind)
    put(entry, "body_hash", body_hash)
    put(entry, "signature", signature)
    put(entry, "body", body)
    put(entry, "header", header)
    put(entry, "hash", hashlib.sha256(header + signature).digest())
    return entry


def signature_ok(entry: Entry) -> bool:
    """Whether the entry's signature verifies against its author (libsodium, no object overhead)."""
    try:
        nacl.bindings.crypto_sign_open(entry.signature + SIGN_DOMAIN + entry.header, entry.author)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return False
    return True


def verify_entry(entry: Entry) -> None:
    """Check one entry on its own: signature, body hash (when the body is there), genesis link.

    Raises :class:`ChainError` with reason ``bad_signature``, ``bad_body_hash`` or ``bad_genesis``.
    """
    if not signature_ok(entry):
        raise ChainError(entry.author, entry.seq, "bad_signature")
    verify_body(entry)


def verify_body(entry: Entry) -> None:
    """The checks of :func:`verify_entry` but the signature: body hash and genesis link."""
    if entry.body is not None and hashlib.sha256(entry.body).digest() != entry.body_hash:
        raise ChainError(entry.author, entry.seq, "bad_body_hash")
    if entry.seq == 1 and entry.prev != ZERO_HASH:
        raise ChainError(entry.author, entry.seq, "bad_genesis", "seq 1 must have an all-zero prev")
