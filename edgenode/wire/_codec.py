"""Canonical binary encoding of plain values.

Values: ``None``, ``bool``, ``int`` (signed, at most 64 bits), ``float``
(IEEE 754 binary64, NaN refused), ``bytes``, ``str``, ``list`` / ``tuple``
and ``dict`` with ``str`` keys.  The encoding is deterministic: one value has
exactly one encoding (minimal varints, map keys sorted by their UTF-8 bytes,
no duplicates), and decoding checks all of that, so ``encode(decode(b)) == b``
for every ``b`` that decodes.  Decoding is total: any byte string either
decodes or raises :class:`~edgenode.errors.DecodeError`.

Decoding is also bounded: at most :data:`MAX_ITEMS` values (scalars, lists and
maps all count) and :data:`MAX_DEPTH` levels of nesting per call, so the
memory and time a peer's bytes cost are O(input) with a small constant (a
2-byte empty list would otherwise become a 64-byte Python list).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping

from ..errors import DecodeError, LocalError

__all__ = ["Value", "encode", "decode", "MAX_DEPTH", "MAX_SIZE", "MAX_ITEMS"]

Value = None | bool | int | float | bytes | str | list["Value"] | dict[str, "Value"]

MAX_DEPTH = 32
"""Deepest nesting of lists and maps accepted by the decoder."""
MAX_SIZE = 64 * 1024 * 1024
"""Largest encoded value accepted by the decoder (64 MiB)."""
MAX_ITEMS = 65_536
"""Most values (every scalar, list and map counts one) one :func:`decode` call builds."""

_NONE, _FALSE, _TRUE, _INT, _FLOAT, _BYTES, _STR, _LIST, _MAP = range(9)
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_F64 = struct.Struct(">d")


def _varint(n: int, out: bytearray) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _enc(v: object, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise LocalError("value nested too deeply to encode")
    if v is None:
        out.append(_NONE)
    elif v is True:
        out.append(_TRUE)
    elif v is False:
        out.append(_FALSE)
    elif isinstance(v, int):
        if not _INT_MIN <= v <= _INT_MAX:
            raise LocalError(f"integer out of 64-bit range: {v}")
        out.append(_INT)
        _varint((v << 1) ^ (v >> 63) if v < 0 else v << 1, out)
    elif isinstance(v, float):
        if math.isnan(v):
            raise LocalError("NaN has no canonical encoding")
        out.append(_FLOAT)
        out += _F64.pack(v + 0.0)  # folds -0.0 into 0.0
    elif isinstance(v, bytes | bytearray | memoryview):
        b = bytes(v)
        out.append(_BYTES)
        _varint(len(b), out)
        out += b
    elif isinstance(v, str):
        b = v.encode("utf-8")
        out.append(_STR)
        _varint(len(b), out)
        out += b
    elif isinstance(v, list | tuple):
        out.append(_LIST)
        _varint(len(v), out)
        for item in v:
            _enc(item, out, depth + 1)
    elif isinstance(v, Mapping):
        items = []
        for k, item in v.items():
            if not isinstance(k, str):
                raise LocalError(f"map keys must be str, not {type(k).__name__}")
            items.append((k.encode("utf-8"), item))
        items.sort(key=lambda kv: kv[0])
        out.append(_MAP)
        _varint(len(items), out)
        for kb, item in items:
            _varint(len(kb), out)
            out += kb
            _enc(item, out, depth + 1)
    else:
        raise LocalError(f"cannot encode a {type(v).__name__}")


def bytes_header(n: int) -> bytes:
    """The tag and length that precede ``n`` raw bytes in :func:`encode`'s output."""
    out = bytearray([_BYTES])
    _varint(n, out)
    return bytes(out)


def encode(value: object) -> bytes:
    """Return the canonical bytes of ``value``; raise LocalError if it has none."""
    out = bytearray()
    _enc(value, out, 0)
    return bytes(out)


class _Reader:
    __slots__ = ("buf", "items", "pos")

    def __init__(self, buf: bytes, max_items: int) -> None:
        self.buf = buf
        self.pos = 0
        self.items = max_items
        """Values still allowed before the decoder gives up."""

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            raise DecodeError("truncated value")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = 0
        n = 0
        start = self.pos
        while True:
            b = self.byte()
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 63:
                raise DecodeError("varint too long")
        if self.pos - start > 1 and b == 0:
            raise DecodeError("non-minimal varint")
        return n

    def take(self, n: int) -> bytes:
        if n > len(self.buf) - self.pos:
            raise DecodeError("length runs past the end of the input")
        b = self.buf[self.pos : self.pos + n]
        self.pos += n
        return b

    def text(self) -> str:
        raw = self.take(self.varint())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("invalid UTF-8 in string") from exc


def _dec(r: _Reader, depth: int, max_depth: int) -> Value:
    if depth > max_depth:
        raise DecodeError("value nested too deeply")
    r.items -= 1
    if r.items < 0:
        raise DecodeError("too many values in one message")
    tag = r.byte()
    if tag == _NONE:
        return None
    if tag == _FALSE:
        return False
    if tag == _TRUE:
        return True
    if tag == _INT:
        z = r.varint()
        v = (z >> 1) ^ -(z & 1)
        if not _INT_MIN <= v <= _INT_MAX:
            raise DecodeError("integer out of 64-bit range")
        return v
    if tag == _FLOAT:
        (f,) = _F64.unpack(r.take(8))
        if math.isnan(f) or (f == 0.0 and math.copysign(1.0, f) < 0):
            raise DecodeError("non-canonical float")
        return float(f)
    if tag == _BYTES:
        return r.take(r.varint())
    if tag == _STR:
        return r.text()
    if tag == _LIST:
        n = r.varint()
        if n > len(r.buf) - r.pos:
            raise DecodeError("list longer than the input")
        if n > r.items:
            raise DecodeError("too many values in one message")
        return [_dec(r, depth + 1, max_depth) for _ in range(n)]
    if tag == _MAP:
        n = r.varint()
        if n > len(r.buf) - r.pos:
            raise DecodeError("map longer than the input")
        if n > r.items:
            raise DecodeError("too many values in one message")
        out: dict[str, Value] = {}
        prev: bytes | None = None
        for _ in range(n):
            kstart = r.pos
            key = r.text()
            kb = r.buf[kstart:r.pos]
            kraw = kb[len(kb) - len(key.encode("utf-8")):]
            if prev is not None and kraw <= prev:
                raise DecodeError("map keys not strictly ascending")
            prev = kraw
            out[key] = _dec(r, depth + 1, max_depth)
        return out
    raise DecodeError(f"unknown tag 0x{tag:02x}")


def decode(
    data: bytes | bytearray | memoryview, *, max_items: int = MAX_ITEMS, max_depth: int = MAX_DEPTH
) -> Value:
    """Decode canonical bytes; raise DecodeError for anything else.

    At most ``max_items`` values and ``max_depth`` levels of nesting are built
    (callers may only lower the defaults); more is a DecodeError.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise LocalError(f"decode takes bytes, not {type(data).__name__}")
    if len(data) > MAX_SIZE:
        raise DecodeError("input larger than MAX_SIZE")
    buf = bytes(data)
    r = _Reader(buf, min(max_items, MAX_ITEMS))
    v = _dec(r, 0, min(max_depth, MAX_DEPTH))
    if r.pos != len(buf):
        raise DecodeError("trailing bytes after value")
    return v
