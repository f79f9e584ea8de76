"""Typed messages and signed envelopes."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgenode import wire
from edgenode.errors import DecodeError, LocalError, SignatureError
from edgenode.identity import Identity


@wire.message("test.inner", 1)
@dataclass(frozen=True)
class Inner:
    name: str
    weight: float


@wire.message("test.sample", 3)
@dataclass(frozen=True)
class Sample:
    count: int
    blob: bytes
    tags: tuple[str, ...] = ()
    inner: Inner | None = None
    meta: dict[str, int] = field(default_factory=dict)
    flag: bool = False


ALICE = Identity(bytes(range(32)))
BOB = Identity(bytes(range(1, 33)))


def sample() -> Sample:
    return Sample(7, b"\x01\x02", ("a", "b"), Inner("w", 0.25), {"x": 1}, True)


def test_message_round_trip() -> None:
    msg = sample()
    assert wire.from_bytes(Sample, wire.to_bytes(msg)) == msg
    assert wire.decode_any(wire.to_bytes(msg)) == msg


def test_envelope_round_trip_and_author() -> None:
    env = wire.open_envelope(wire.seal(ALICE, sample()))
    assert env.message == sample()
    assert env.author == ALICE.public_key
    assert env.author_id == ALICE.peer_id


def test_envelope_is_deterministic() -> None:
    # Ed25519 signatures are deterministic, so the whole envelope is too.
    assert wire.seal(ALICE, sample()) == wire.seal(ALICE, sample())


def test_forged_author_is_rejected() -> None:
    raw = wire.decode(wire.seal(ALICE, sample()))
    assert isinstance(raw, list)
    raw[1] = BOB.public_key  # claim Bob wrote it
    with pytest.raises(SignatureError):
        wire.open_envelope(wire.encode(raw))


def test_tampered_body_is_rejected() -> None:
    raw = wire.decode(wire.seal(ALICE, sample()))
    assert isinstance(raw, list)
    raw[2] = wire.to_bytes(Sample(8, b"\x01\x02"))
    with pytest.raises(SignatureError):
        wire.open_envelope(wire.encode(raw))


def test_an_envelope_opened_before_does_not_vouch_for_a_tampered_copy() -> None:
    # opening the same bytes again skips the signature check; any other bytes never do
    sealed = wire.seal(ALICE, sample())
    for _ in range(3):
        assert wire.open_envelope(sealed).message == sample()
    raw = wire.decode(sealed)
    assert isinstance(raw, list)
    for i, forged in ((2, wire.to_bytes(Sample(8, b"\x01\x02"))), (1, BOB.public_key)):
        tampered = list(raw)
        tampered[i] = forged
        with pytest.raises(SignatureError):
            wire.open_envelope(wire.encode(tampered))
    assert wire.open_envelope(sealed).author == ALICE.public_key


def test_open_as_checks_the_kind() -> None:
    with pytest.raises(DecodeError, match=r"expected test\.sample"):
        wire.open_as(Sample, wire.seal(ALICE, Inner("x", 1.0)))


@pytest.mark.parametrize(
    "fields",
    [
        {"count": "7"},  # wrong type
        {"count": True},  # bool is not an int
        {"extra": 1},  # unknown field
        {"tags": [1]},  # wrong item type
        {"inner": {"name": "w"}},  # nested missing field
    ],
)
def test_ill_typed_fields_raise_decode_error(fields: dict[str, object]) -> None:
    good = wire.decode(wire.to_bytes(sample()))
    assert isinstance(good, list) and isinstance(good[2], dict)
    good[2].update(fields)
    with pytest.raises(DecodeError):
        wire.decode_any(wire.encode(good))


def test_missing_field_and_unknown_kind_and_version() -> None:
    good = wire.decode(wire.to_bytes(sample()))
    assert isinstance(good, list) and isinstance(good[2], dict)
    del good[2]["count"]
    with pytest.raises(DecodeError, match="missing field"):
        wire.decode_any(wire.encode(good))
    with pytest.raises(DecodeError, match="unknown message kind"):
        wire.decode_any(wire.encode(["nope", 1, {}]))
    with pytest.raises(DecodeError, match="version"):
        wire.decode_any(wire.encode(["test.sample", 2, {}]))


def test_registering_a_kind_twice_is_a_local_error() -> None:
    with pytest.raises(LocalError):

        @wire.message("test.sample", 1)
        @dataclass(frozen=True)
        class Other:
            x: int


@given(st.binary(max_size=300))
def test_open_envelope_is_total(data: bytes) -> None:
    with contextlib.suppress(DecodeError, SignatureError):
        wire.open_envelope(data)


@given(st.data())
def test_mutated_envelopes_never_verify_as_something_else(data: st.DataObject) -> None:
    sealed = bytearray(wire.seal(ALICE, sample()))
    i = data.draw(st.integers(0, len(sealed) - 1))
    b = data.draw(st.integers(0, 255).filter(lambda x: x != sealed[i]))
    sealed[i] = b
    try:
        env = wire.open_envelope(bytes(sealed))
    except (DecodeError, SignatureError):
        return
    # only a re-encoding-equivalent mutation could pass, and none exists for canonical bytes
    raise AssertionError(f"mutated envelope verified: {env}")
