"""The canonical codec: determinism, round trips, and total decoding."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgenode import wire
from edgenode.errors import DecodeError, LocalError, RemoteError

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.binary(max_size=64)
    | st.text(max_size=32)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=40,
)


def _norm(v: object) -> object:
    """What a value looks like after a round trip (-0.0 folds to 0.0)."""
    if isinstance(v, float) and v == 0.0:
        return 0.0
    if isinstance(v, list):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v


@given(values)
def test_round_trip_and_canonical(v: wire.Value) -> None:
    data = wire.encode(v)
    back = wire.decode(data)
    assert back == _norm(v)
    assert wire.encode(back) == data


@given(st.dictionaries(st.text(max_size=8), st.integers(-5, 5), max_size=8))
def test_map_order_does_not_change_bytes(d: dict[str, int]) -> None:
    reversed_d = dict(reversed(list(d.items())))
    assert wire.encode(d) == wire.encode(reversed_d)


@given(st.binary(max_size=256))
def test_decode_is_total(data: bytes) -> None:
    try:
        v = wire.decode(data)
    except DecodeError:
        return
    # anything that decodes is canonical: it re-encodes to the same bytes
    assert wire.encode(v) == data


@given(values, st.data())
def test_mutations_decode_canonically_or_raise(v: wire.Value, data: st.DataObject) -> None:
    raw = bytearray(wire.encode(v))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    try:
        back = wire.decode(bytes(raw))
    except DecodeError:
        return
    assert wire.encode(back) == bytes(raw)


# Known-answer vectors: the same value gives these exact bytes on every platform.
VECTORS: list[tuple[object, str]] = [
    (None, "00"),
    (False, "01"),
    (True, "02"),
    (0, "0300"),
    (1, "0302"),
    (-1, "0301"),
    (300, "03d804"),
    (2**63 - 1, "03feffffffffffffffff01"),
    (-(2**63), "03ffffffffffffffffff01"),
    (1.5, "043ff8000000000000"),
    (-0.0, "040000000000000000"),
    (b"\x00\xff", "050200ff"),
    ("é", "0602c3a9"),
    ([1, "a"], "070203020601" + "61"),
    ({"b": 1, "a": None}, "080201" + "6100" + "01" + "620302"),
]


@pytest.mark.parametrize(("value", "hexbytes"), VECTORS)
def test_known_answer_vectors(value: object, hexbytes: str) -> None:
    assert wire.encode(value).hex() == hexbytes


@pytest.mark.parametrize(
    ("hexbytes", "why"),
    [
        ("", "truncated"),
        ("09", "unknown tag"),
        ("0300" + "00", "trailing"),
        ("038000", "non-minimal"),
        ("047ff8000000000001", "non-canonical float"),  # a NaN
        ("048000000000000000", "non-canonical float"),  # -0.0
        ("0602c3", "past the end"),
        ("0601ff", "UTF-8"),
        ("0802" + "016200" + "016100", "ascending"),
        ("0802" + "016100" + "016100", "ascending"),
        ("07" + "ffffffff0f", "longer than the input"),
        ("0701" * 40 + "00", "nested"),
        ("03ffffffffffffffffffff01", "varint too long"),
    ],
)
def test_malformed_inputs_raise_decode_error(hexbytes: str, why: str) -> None:
    with pytest.raises(DecodeError, match=why):
        wire.decode(bytes.fromhex(hexbytes))


def test_decode_error_is_remote() -> None:
    assert issubclass(DecodeError, RemoteError)


@pytest.mark.parametrize("bad", [math.nan, 2**64, {1: 2}, object(), {1.5}])
def test_unencodable_values_are_local_errors(bad: object) -> None:
    with pytest.raises(LocalError):
        wire.encode(bad)
