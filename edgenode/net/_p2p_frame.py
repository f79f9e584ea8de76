"""Sans-IO framing of the request/response protocol spoken over libp2p streams.

``/edgenode/rpc/1`` carries one request per stream (bulk transfers such as blobs,
and peers without the channel); ``/edgenode/rpc/2`` multiplexes many requests on one
long-lived stream (see the end of this module).  On rpc/1 both directions carry
exactly one *frame*::

    frame    = u32 big-endian body length | body
    request  = u16 big-endian protocol length | protocol (UTF-8) | payload
    response = status byte | payload             (status OK)
             | status byte | message (UTF-8)     (status ERROR)

:class:`FrameReader` takes byte chunks as they arrive and yields complete
frame bodies; every decoder here is total: it returns a value or raises
:class:`~edgenode.errors.DecodeError` (a remote fault).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import DecodeError, LocalError

__all__ = [
    "RPC_PROTOCOL",
    "STATUS_OK",
    "STATUS_ERROR",
    "FrameReader",
    "Response",
    "encode_frame",
    "encode_request",
    "decode_request",
    "encode_response",
    "decode_response",
    "MUX_PROTOCOL",
    "KIND_REQUEST",
    "KIND_OK",
    "KIND_ERROR",
    "encode_mux",
    "decode_mux",
    "FrameSplitter",
]

RPC_PROTOCOL = "/edgenode/rpc/1"
"""The one libp2p stream protocol that carries every request; the edgenode protocol name is inside."""

STATUS_OK = 0
STATUS_ERROR = 1

_LEN = struct.Struct(">I")
_PLEN = struct.Struct(">H")
_MAX_PROTOCOL = 0xFFFF


def encode_frame(body: bytes, max_bytes: int) -> bytes:
    """Prefix ``body`` with its length; LocalError if it exceeds ``max_bytes``."""
    if len(body) > max_bytes:
        raise LocalError(f"frame of {len(body)} bytes exceeds the limit of {max_bytes}")
    return _LEN.pack(len(body)) + body


class FrameReader:
    """Accumulates stream chunks until one whole frame has arrived."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._buf = bytearray()
        self._need: int | None = None

    @property
    def wanted(self) -> int:
        """How many more bytes complete the current frame (at least 1 while incomplete)."""
        if self._need is None:
            return max(1, _LEN.size - len(self._buf))
        return max(1, _LEN.size + self._need - len(self._buf))

    def feed(self, chunk: bytes) -> bytes | None:
        """Add ``chunk``; return the frame body once complete, else None.

        Raises DecodeError when the announced length exceeds the limit or bytes
        follow the end of the frame (one frame per stream direction).
        """
        self._buf += chunk
        if self._need is None and len(self._buf) >= _LEN.size:
            (need,) = _LEN.unpack_from(self._buf)
            if need > self._max:
                raise DecodeError(f"frame of {need} bytes exceeds the limit of {self._max}")
            self._need = need
        if self._need is None:
            return None
        end = _LEN.size + self._need
        if len(self._buf) < end:
            return None
        if len(self._buf) > end:
            raise DecodeError("bytes after the end of the frame")
        return bytes(self._buf[_LEN.size : end])

    def eof(self) -> None:
        """The stream ended before a frame completed: raise DecodeError."""
        raise DecodeError(f"stream ended after {len(self._buf)} bytes of an incomplete frame")


def encode_request(protocol: str, payload: bytes) -> bytes:
    name = protocol.encode("utf-8")
    if not name or len(name) > _MAX_PROTOCOL:
        raise LocalError(f"bad protocol name {protocol!r}")
    return _PLEN.pack(len(name)) + name + payload


def decode_request(body: bytes) -> tuple[str, bytes]:
    """``(protocol, payload)`` of a request body; DecodeError if malformed."""
    if len(body) < _PLEN.size:
        raise DecodeError("request too short")
    (n,) = _PLEN.unpack_from(body)
    if n == 0 or len(body) < _PLEN.size + n:
        raise DecodeError("request protocol name truncated")
    try:
        protocol = body[_PLEN.size : _PLEN.size + n].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("request protocol name is not UTF-8") from exc
    return protocol, body[_PLEN.size + n :]


@dataclass(frozen=True)
class Response:
    """A decoded response: either ``ok`` with ``payload`` or an error ``message``."""

    ok: bool
    payload: bytes = b""
    message: str = ""


def encode_response(response: Response) -> bytes:
    if response.ok:
        return bytes([STATUS_OK]) + response.payload
    return bytes([STATUS_ERROR]) + response.message.encode("utf-8")


def decode_response(body: bytes) -> Response:
    """The response in ``body``; DecodeError if malformed."""
    if not body:
        raise DecodeError("empty response")
    status, rest = body[0], body[1:]
    if status == STATUS_OK:
        return Response(ok=True, payload=rest)
    if status == STATUS_ERROR:
        try:
            return Response(ok=False, message=rest.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise DecodeError("error message is not UTF-8") from exc
    raise DecodeError(f"unknown response status {status}")


# -- the multiplexed channel (``/edgenode/rpc/2``) ------------------------------------
#
# One long-lived stream per (requester, server) pair carries many requests at once::
#
#     frame = u32 big-endian body length | body
#     body  = u32 request id | kind byte | rest
#     rest  = request (KIND_REQUEST) | payload (KIND_OK) | reason code, UTF-8 (KIND_ERROR)
#
# Responses may come back in any order; the id pairs them with their request.

MUX_PROTOCOL = "/edgenode/rpc/2"
"""The libp2p stream protocol of the persistent request channel."""

KIND_REQUEST = 0
KIND_OK = 1
KIND_ERROR = 2

_MUX_HEAD = struct.Struct(">IB")


def encode_mux(req_id: int, kind: int, body: bytes, max_bytes: int) -> bytes:
    """One channel frame; LocalError if it exceeds ``max_bytes``."""
    return encode_frame(_MUX_HEAD.pack(req_id, kind) + body, max_bytes)


def decode_mux(frame: bytes) -> tuple[int, int, bytes]:
    """``(request id, kind, rest)`` of a channel frame body; DecodeError if malformed."""
    if len(frame) < _MUX_HEAD.size:
        raise DecodeError("channel frame too short")
    req_id, kind = _MUX_HEAD.unpack_from(frame)
    if kind not in (KIND_REQUEST, KIND_OK, KIND_ERROR):
        raise DecodeError(f"unknown channel frame kind {kind}")
    return req_id, kind, frame[_MUX_HEAD.size :]


class FrameSplitter:
    """Splits a long-lived stream into its successive frames (sans-IO)."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add ``chunk``; return the frame bodies it completed (DecodeError on an oversized frame)."""
        self._buf += chunk
        out: list[bytes] = []
        buf = self._buf
        while len(buf) >= _LEN.size:
            (need,) = _LEN.unpack_from(buf)
            if need > self._max:
                raise DecodeError(f"frame of {need} bytes exceeds the limit of {self._max}")
            end = _LEN.size + need
            if len(buf) < end:
                break
            out.append(bytes(buf[_LEN.size : end]))
            del buf[:end]
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held."""
        return len(self._buf)
