"""Chains: every failure reason, forks and equivocation proofs, batches; property tests."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from conftest import KeySigner, make_chain
from hypothesis import given
from hypothesis import strategies as st

import ledger
from ledger import (
    ChainError,
    Entry,
    EntryDecodeError,
    EquivocationProof,
    InvalidProofError,
    LedgerRemoteError,
    build_entry,
    decode_entries,
    encode_entries,
    find_equivocation,
    verify_chain,
    verify_extension,
)


def _reason(entries: list[Entry]) -> tuple[int, str]:
    with pytest.raises(ChainError) as info:
        verify_chain(entries)
    return info.value.seq, info.value.reason


def _resign(signer: KeySigner, e: Entry, **changes: object) -> Entry:
    """An entry with changed fields, correctly signed again (a valid signature over bad content)."""
    fields = {f.name: getattr(e, f.name) for f in dataclasses.fields(e) if f.init}
    fields.update(changes)
    unsigned = Entry(**{**fields, "signature": bytes(64)})  # type: ignore[arg-type]
    sig = signer.sign(ledger.SIGN_DOMAIN + unsigned.header)
    return dataclasses.replace(unsigned, signature=sig)


def test_good_chains_of_several_authors_interleaved() -> None:
    a, b = make_chain(KeySigner(), 5), make_chain(KeySigner(), 4)
    mixed = [x for pair in zip(a, b, strict=False) for x in pair] + a[4:]
    verify_chain(mixed)
    assert verify_extension(a[1], a[2:]) == a[-1]
    assert verify_extension(None, []) is None


def test_every_reason(signer: KeySigner) -> None:
    c = make_chain(signer, 5)
    flipped = dataclasses.replace(c[2], signature=bytes([c[2].signature[0] ^ 0x80]) + c[2].signature[1:])
    assert _reason([*c[:2], flipped, *c[3:]]) == (3, "bad_signature")
    assert _reason([c[0], c[1], c[3], c[4]]) == (3, "gap")
    assert _reason([c[0], c[2], c[1]]) == (2, "gap")  # reordered
    assert _reason(c[1:]) == (1, "gap")  # missing genesis
    assert _reason([*c[:3], c[2]]) == (3, "fork")  # seq repeated
    assert _reason([*c[:2], _resign(signer, c[2], prev=b"\x07" * 32)]) == (3, "broken_link")
    assert _reason([*c[:2], _resign(signer, c[2], timestamp_ms=c[1].timestamp_ms - 1)]) == (3, "time_backwards")
    assert _reason([_resign(signer, c[0], prev=b"\x01" * 32)]) == (1, "bad_genesis")
    assert _reason([*c[:1], dataclasses.replace(c[1], body=b"not the body")]) == (2, "bad_body_hash")


def test_chain_error_names_author_seq_reason(signer: KeySigner) -> None:
    c = make_chain(signer, 3)
    with pytest.raises(ChainError) as info:
        verify_chain([c[0], c[2]])
    err = info.value
    assert (err.author, err.seq, err.reason) == (signer.public_key, 2, "gap")
    assert "seq 2" in str(err) and "gap" in str(err) and isinstance(err, LedgerRemoteError)


def test_equivocation_proof_roundtrip_and_verify(signer: KeySigner) -> None:
    c = make_chain(signer, 3)
    other = build_entry(signer, c[1], "task_result", b"another story", c[1].timestamp_ms)
    assert other.seq == 3 and other.hash != c[2].hash
    proof = find_equivocation(c[2], other)
    assert proof is not None and proof.author == signer.public_key and proof.seq == 3
    assert find_equivocation(other, c[2]) == proof  # canonical order
    again = EquivocationProof.from_bytes(proof.to_bytes())
    assert again == proof
    again.verify()
    assert find_equivocation(c[2], c[2]) is None
    assert find_equivocation(c[1], c[2]) is None
    assert find_equivocation(c[2], make_chain(KeySigner(), 3)[2]) is None


def test_forged_proofs_are_rejected(signer: KeySigner) -> None:
    c = make_chain(signer, 3)
    forged = dataclasses.replace(c[2], kind="forged")  # same author/seq, bad signature
    assert find_equivocation(c[2], forged) is None
    with pytest.raises(InvalidProofError):
        EquivocationProof.of(c[2], forged).verify()
    with pytest.raises(InvalidProofError):
        EquivocationProof.from_bytes(EquivocationProof.of(c[2], forged).to_bytes())
    with pytest.raises(InvalidProofError):
        EquivocationProof(c[1], c[2]).verify()  # not one seq
    with pytest.raises(EntryDecodeError):
        EquivocationProof.from_bytes(b"\x01")


def test_batch_roundtrip(signer: KeySigner) -> None:
    c = make_chain(signer, 4)
    assert decode_entries(encode_entries(c)) == c
    assert decode_entries(encode_entries(c, with_body=False)) == [e.without_body() for e in c]
    assert decode_entries(encode_entries([])) == []
    raw = encode_entries(c)
    with pytest.raises(EntryDecodeError):
        decode_entries(raw[:-1])
    with pytest.raises(EntryDecodeError):
        decode_entries(b"\x00\x00\x00\x05" + raw[4:])  # count says 5, 4 present


_SIGNER = KeySigner(bytes(32))
_CHAIN = make_chain(_SIGNER, 6)
_BATCH = encode_entries(_CHAIN)


@given(st.binary(max_size=600))
def test_decode_entries_and_proofs_are_total(data: bytes) -> None:
    for decode in (decode_entries, EquivocationProof.from_bytes):
        with contextlib.suppress(LedgerRemoteError):
            decode(data)


@given(st.lists(st.tuples(st.integers(0, len(_BATCH) - 1), st.integers(1, 255)), min_size=1, max_size=3))
def test_mutated_batch_then_chain_verification(flips: list[tuple[int, int]]) -> None:
    data = bytearray(_BATCH)
    for pos, x in flips:
        data[pos] ^= x
    try:
        entries = decode_entries(bytes(data))
        verify_chain(entries)
    except LedgerRemoteError:
        return
    assert entries == _CHAIN  # only the untouched chain (or a no-op mutation) verifies


@given(
    st.lists(st.integers(0, 5), max_size=8),
    st.sampled_from(["drop", "swap", "dup", "none"]),
    st.integers(0, 5),
)
def test_reshuffled_chains_verify_only_when_intact(order: list[int], op: str, k: int) -> None:
    entries = list(_CHAIN)
    if op == "drop":
        del entries[k]
    elif op == "swap" and k < 5:
        entries[k], entries[k + 1] = entries[k + 1], entries[k]
    elif op == "dup":
        entries.insert(k, entries[k])
    entries += [_CHAIN[i] for i in order]
    intact = entries == _CHAIN[: len(entries)]  # a prefix of the real chain is a valid chain
    try:
        verify_chain(entries)
    except ChainError as exc:
        assert not intact
        assert exc.reason in ledger.CHAIN_REASONS and 1 <= exc.seq <= 6
        return
    assert intact
