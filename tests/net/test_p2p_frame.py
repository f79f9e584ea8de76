"""The request/response framing of net.p2p: round trips, limits, and total decoders."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgenode.errors import DecodeError, LocalError
from edgenode.net._p2p_frame import (
    FrameReader,
    Response,
    decode_request,
    decode_response,
    encode_frame,
    encode_request,
    encode_response,
)

LIMIT = 1 << 20


def feed_all(reader: FrameReader, data: bytes, cuts: list[int]) -> bytes | None:
    """Feed ``data`` split at ``cuts``; return the frame from the last chunk."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    out = None
    for lo, hi in itertools.pairwise(points):
        got = reader.feed(data[lo:hi])
        if got is not None:
            assert hi == len(data), "a frame completed before all its bytes arrived"
            out = got
    return out


@given(st.binary(max_size=5000), st.lists(st.integers(min_value=0, max_value=6000), max_size=8))
def test_frame_round_trip_in_any_chunking(body: bytes, cuts: list[int]) -> None:
    reader = FrameReader(LIMIT)
    assert feed_all(reader, encode_frame(body, LIMIT), cuts) == body


def test_wanted_counts_down_to_the_end_of_the_frame() -> None:
    reader = FrameReader(LIMIT)
    frame = encode_frame(b"abcdef", LIMIT)
    assert reader.wanted == 4
    assert reader.feed(frame[:2]) is None
    assert reader.wanted == 2
    assert reader.feed(frame[2:5]) is None
    assert reader.wanted == 5
    assert reader.feed(frame[5:]) == b"abcdef"


def test_oversized_frames_are_refused_both_ways() -> None:
    with pytest.raises(LocalError):
        encode_frame(b"x" * 11, 10)
    reader = FrameReader(10)
    with pytest.raises(DecodeError):
        reader.feed((11).to_bytes(4, "big"))


def test_trailing_bytes_and_early_eof_are_remote_faults() -> None:
    reader = FrameReader(LIMIT)
    with pytest.raises(DecodeError):
        reader.feed(encode_frame(b"ab", LIMIT) + b"extra")
    reader = FrameReader(LIMIT)
    reader.feed(encode_frame(b"abc", LIMIT)[:5])
    with pytest.raises(DecodeError):
        reader.eof()


@given(st.text(min_size=1, max_size=50), st.binary(max_size=2000))
def test_request_round_trip(protocol: str, payload: bytes) -> None:
    assert decode_request(encode_request(protocol, payload)) == (protocol, payload)


def test_empty_protocol_is_a_local_error() -> None:
    with pytest.raises(LocalError):
        encode_request("", b"x")


@given(st.binary(max_size=2000))
def test_response_round_trip(payload: bytes) -> None:
    assert decode_response(encode_response(Response(ok=True, payload=payload))) == Response(ok=True, payload=payload)


@given(st.text(max_size=200))
def test_error_response_round_trip(message: str) -> None:
    assert decode_response(encode_response(Response(ok=False, message=message))) == Response(ok=False, message=message)


@given(st.binary(max_size=300))
def test_request_decoder_is_total(data: bytes) -> None:
    try:
        protocol, payload = decode_request(data)
    except DecodeError:
        return
    assert encode_request(protocol, payload) == data


@given(st.binary(max_size=300))
def test_response_decoder_is_total(data: bytes) -> None:
    try:
        response = decode_response(data)
    except DecodeError:
        return
    assert encode_response(response) == data


@given(st.binary(max_size=300), st.integers(min_value=0, max_value=400))
def test_frame_reader_is_total(data: bytes, limit: int) -> None:
    reader = FrameReader(limit)
    try:
        body = reader.feed(data)
    except DecodeError:
        return
    if body is not None:
        assert encode_frame(body, limit) == data


@pytest.mark.parametrize("body", [b"", b"\x05", b"\x01\xff\xfe", b"\x07abc"])
def test_malformed_responses(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_response(body)


@pytest.mark.parametrize("body", [b"", b"\x00", b"\x00\x00rest", b"\x00\x05ab", b"\x00\x02\xff\xfe"])
def test_malformed_requests(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_request(body)
