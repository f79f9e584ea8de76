"""One entry: layout, signing, verification, total decoding."""

from __future__ import annotations

import hashlib
import struct

import pytest
from conftest import KeySigner, make_chain
from hypothesis import given
from hypothesis import strategies as st

import ledger
from ledger import ChainError, Entry, EntryDecodeError, LedgerLocalError, build_entry, verify_entry

SEED = bytes(range(32))


def test_build_first_entry_links_to_zero_and_verifies() -> None:
    s = KeySigner(SEED)
    e = build_entry(s, None, "genesis", b"hello", 42)
    assert (e.seq, e.prev, e.author, e.timestamp_ms) == (1, ledger.ZERO_HASH, s.public_key, 42)
    assert e.body_hash == hashlib.sha256(b"hello").digest()
    assert e.hash == hashlib.sha256(e.header + e.signature).digest()
    verify_entry(e)
    nxt = build_entry(s, e, "task_result", b"x", 43)
    assert (nxt.seq, nxt.prev) == (2, e.hash)
    verify_entry(nxt)


def test_layout_is_the_documented_fixed_struct() -> None:
    s = KeySigner(SEED)
    e = build_entry(s, None, "model_update", b"", -5)
    raw = e.to_bytes()
    version, author, seq, prev, ts, body_hash, klen = struct.unpack_from(">B32sQ32sq32sB", raw)
    assert (version, author, seq, prev, ts, body_hash) == (1, s.public_key, 1, bytes(32), -5, e.body_hash)
    assert raw[struct.calcsize(">B32sQ32sq32sB") :][:klen] == b"model_update"
    assert raw == e.header + e.signature + b"\x01" + b"\x00\x00\x00\x00"
    # same inputs, same bytes (Ed25519 signatures are deterministic)
    assert build_entry(KeySigner(SEED), None, "model_update", b"", -5).to_bytes() == raw


def test_roundtrip_with_and_without_body(signer: KeySigner) -> None:
    for e in make_chain(signer, 3):
        assert Entry.from_bytes(e.to_bytes()) == e
        bare = Entry.from_bytes(e.to_bytes(with_body=False))
        assert bare.body is None and bare.hash == e.hash and bare == e.without_body()
        verify_entry(bare)


@pytest.mark.parametrize("field", ["author", "seq", "prev", "timestamp_ms", "kind", "body_hash", "signature"])
def test_changing_any_signed_field_breaks_the_signature(signer: KeySigner, field: str) -> None:
    e = make_chain(signer, 2)[1]
    changes = {
        "author": KeySigner().public_key,
        "seq": 3,
        "prev": b"\x01" * 32,
        "timestamp_ms": e.timestamp_ms + 1,
        "kind": "other",
        "body_hash": hashlib.sha256(b"other").digest(),
        "signature": bytes([e.signature[0] ^ 1]) + e.signature[1:],
    }
    values = {f: getattr(e, f) for f in ("author", "seq", "prev", "timestamp_ms", "kind", "body_hash", "signature")}
    values[field] = changes[field]
    forged = Entry(**values, body=None)
    with pytest.raises(ChainError) as info:
        verify_entry(forged)
    assert info.value.reason == "bad_signature"


def test_body_that_does_not_match_its_hash(signer: KeySigner) -> None:
    e = make_chain(signer, 1)[0]
    bad = Entry(e.author, e.seq, e.prev, e.timestamp_ms, e.kind, e.body_hash, e.signature, b"tampered")
    with pytest.raises(ChainError) as info:
        verify_entry(bad)
    assert info.value.reason == "bad_body_hash"


def test_local_misuse_is_a_local_error(signer: KeySigner) -> None:
    first = build_entry(signer, None, "genesis", b"", 100)
    with pytest.raises(LedgerLocalError):
        build_entry(signer, first, "later", b"", 99)  # time backwards
    with pytest.raises(LedgerLocalError):
        build_entry(KeySigner(), first, "x", b"", 100)  # another author's prev
    for kind in ["", "UPPER", "with space", "x" * 65]:
        with pytest.raises(LedgerLocalError):
            build_entry(signer, None, kind, b"", 1)
    with pytest.raises(LedgerLocalError):
        build_entry(signer, None, "big", bytes(ledger.MAX_BODY_BYTES + 1), 1)


def test_decode_rejects_trailing_and_truncated(signer: KeySigner) -> None:
    raw = make_chain(signer, 1)[0].to_bytes()
    with pytest.raises(EntryDecodeError):
        Entry.from_bytes(raw + b"\x00")
    for cut in (0, 1, 50, len(raw) - 1):
        with pytest.raises(EntryDecodeError):
            Entry.from_bytes(raw[:cut])


@given(st.binary(max_size=400))
def test_from_bytes_is_total_on_random_bytes(data: bytes) -> None:
    try:
        e = Entry.from_bytes(data)
    except EntryDecodeError:
        return
    assert e.to_bytes() == data  # anything that decodes is canonical


_VALID = make_chain(KeySigner(SEED), 2)[1].to_bytes()


@given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(1, 255)), min_size=1, max_size=4))
def test_mutated_entry_decodes_to_something_that_fails_or_raises_remote(flips: list[tuple[int, int]]) -> None:
    data = bytearray(_VALID)
    for pos, x in flips:
        data[pos] ^= x
    try:
        e = Entry.from_bytes(bytes(data))
    except EntryDecodeError:
        return
    if bytes(data) == _VALID:
        verify_entry(e)
        return
    with pytest.raises(ChainError):
        verify_entry(e)


@given(st.binary(max_size=300), st.integers(0, 500))
def test_truncated_or_extended_entry(data: bytes, cut: int) -> None:
    blob = (_VALID + data)[: cut + len(_VALID) // 2]
    try:
        e = Entry.from_bytes(blob)
    except EntryDecodeError:
        return
    assert blob == _VALID and e.to_bytes() == _VALID
