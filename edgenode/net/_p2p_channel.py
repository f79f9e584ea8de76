"""Persistent, multiplexed request channels over libp2p streams (trio side).

Opening a libp2p stream per request costs more than the request: yamux SYN/ACK and
window updates, four multistream-select messages and two FINs, about 75% of the CPU of
a small request/response.  A :class:`ClientChannel` is one long-lived
``/edgenode/rpc/2`` stream to one peer that carries many requests at once, each with
an id (:func:`._p2p_frame.encode_mux`), answered in any order.  :func:`serve_channel`
is the other end.

* Back-pressure: a client has at most ``max_inflight`` requests outstanding per peer
  (more wait for a slot); a server runs at most ``max_concurrent`` handlers per channel
  and stops reading while they are all busy, so yamux flow control slows the sender.
* Failure: when the stream breaks (peer restarted, connection lost, malformed frame),
  every waiting request fails at once with :class:`ChannelClosed` and the pool opens a
  new channel for the next one; a request that never reached the wire is retried once.
* Streams are duck-typed (``read(n)``, ``write(b)``, ``close()``, ``reset()``), so the
  tests drive these classes over in-memory trio streams as well as real libp2p.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from ..errors import DecodeError, EdgenodeError
from ._errors import NetError
from ._p2p_frame import (
    KIND_ERROR,
    KIND_OK,
    KIND_REQUEST,
    FrameSplitter,
    decode_mux,
    decode_request,
    encode_mux,
    encode_request,
)
from ._p2p_util import close_quietly, reset_quietly
from ._transport import (
    REASON_BAD_REQUEST,
    REASON_HANDLER_TIMEOUT,
    REASON_NO_HANDLER,
    REASON_TOO_LARGE,
    failure_reason,
)

__all__ = [
    "ClientChannel",
    "ChannelClosed",
    "ChannelCounters",
    "serve_channel",
]

logger = logging.getLogger(__name__)

_READ_CHUNK = 256 * 1024
_WRITE_TIMEOUT = 10.0

class ChannelClosed(NetError):
    """The channel broke; ``sent`` tells whether the request may have reached the peer."""

    def __init__(self, message: str, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class ChannelCounters(Protocol):
    def add(self, name: str, n: int = 1) -> None: ...


class _Stream(Protocol):
    async def read(self, n: int | None = None) -> bytes: ...
    async def write(self, data: bytes) -> None: ...
    async def close(self) -> None: ...
    async def reset(self) -> None: ...


class _Waiter:
    __slots__ = ("body", "event", "kind")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.kind = -1
        self.body = b""


class ClientChannel:
    """The requesting end of one ``/edgenode/rpc/2`` stream to one peer."""

    def __init__(
        self, peer: str, stream: _Stream, max_frame: int, max_inflight: int, counters: ChannelCounters
    ) -> None:
        self.peer = peer
        self._stream = stream
        self._max_frame = max_frame
        self._counters = counters
        self._waiters: dict[int, _Waiter] = {}
        self._next_id = 1
        self._slots = trio.Semaphore(max_inflight)
        self._send_lock = trio.Lock()
        self.closed = False
        self._why = ""
        self.last_used = trio.current_time()

    @property
    def idle(self) -> bool:
        return not self._waiters

    async def run_reader(self) -> None:
        """Read responses until the stream ends; then fail whatever still waits.  Never raises."""
        splitter = FrameSplitter(self._max_frame)
        why = "the peer closed the channel"
        try:
            while not self.closed:
                chunk = await self._stream.read(_READ_CHUNK)
                if not chunk:
                    break
                for frame in splitter.feed(chunk):
                    req_id, kind, body = decode_mux(frame)
                    if kind == KIND_REQUEST:
                        raise DecodeError("a request frame on the requester's side of a channel")
                    waiter = self._waiters.pop(req_id, None)
                    if waiter is None:  # its requester gave up (timeout); the answer is late
                        self._counters.add("requests_late_responses")
                        continue
                    waiter.kind, waiter.body = kind, body
                    waiter.event.set()
        except DecodeError as exc:
            why = f"malformed channel frame: {exc}"
            self._counters.add("requests_bad")
            await reset_quietly(self._stream)
        except Exception as exc:  # EOF, reset, connection lost: py-libp2p raises many types
            why = f"channel broke: {type(exc).__name__}"
        finally:
            self._fail_all(why)

    def _fail_all(self, why: str) -> None:
        self.closed = True
        self._why = why
        waiters, self._waiters = self._waiters, {}
        for w in waiters.values():
            w.event.set()  # kind stays -1: failed

    async def request(self, protocol: str, payload: bytes) -> tuple[bool, bytes]:
        """Send one request and wait for its answer: ``(ok, payload or reason code)``.

        Cancel it with an enclosing cancel scope (timeout).  Raises ChannelClosed when the
        channel is or becomes broken (``sent`` False when nothing reached the wire).
        """
        frame_body = encode_request(protocol, payload)
        async with self._slots:
            if self.closed:
                raise ChannelClosed(f"channel to {self.peer} closed: {self._why}", sent=False)
            req_id = self._next_id
            self._next_id = self._next_id % 0xFFFFFFFF + 1
            waiter = _Waiter()
            self._waiters[req_id] = waiter
            self.last_used = trio.current_time()
            try:
                await self._send(encode_mux(req_id, KIND_REQUEST, frame_body, self._max_frame))
                await waiter.event.wait()
            finally:
                self._waiters.pop(req_id, None)
                self.last_used = trio.current_time()
        if waiter.kind == KIND_OK:
            return True, waiter.body
        if waiter.kind == KIND_ERROR:
            return False, waiter.body
        raise ChannelClosed(f"channel to {self.peer} closed: {self._why}", sent=True)

    async def _send(self, frame: bytes) -> None:
        # A frame cut in half would corrupt every later one: writes are shielded from the
        # caller's timeout and bounded on their own; a write that fails breaks the channel.
        with trio.CancelScope(shield=True):
            async with self._send_lock:
                if self.closed:
                    raise ChannelClosed(f"channel to {self.peer} closed: {self._why}", sent=False)
                ok = False
                with trio.move_on_after(_WRITE_TIMEOUT):
                    try:
                        await self._stream.write(frame)
                        ok = True
                    except Exception as exc:  # reset, closed connection: many libp2p types
                        self._why = f"write failed: {type(exc).__name__}"
                if not ok:
                    self._fail_all(self._why or "write timed out")
                    await reset_quietly(self._stream)
                    raise ChannelClosed(f"channel to {self.peer} closed: {self._why}", sent=False)

    async def aclose(self) -> None:
        """Half-close: the peer finishes what it has, then the reader sees the end."""
        if not self.closed:
            self.closed = True
            self._why = "closed locally"
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                try:
                    await self._stream.close()
                except Exception as exc:  # already gone
                    logger.debug("closing a channel: %r", exc)


async def serve_channel(
    stream: _Stream,
    sender: str,
    dispatch: Callable[[str, str, bytes], Awaitable[bytes]],
    *,
    max_frame: int,
    max_concurrent: int,
    handler_timeout: float,
    counters: ChannelCounters,
    no_handler: type[BaseException],
    request_limit: Callable[[str], int] | None = None,
    max_response: int | None = None,
) -> None:
    """Serve requests arriving on one inbound channel until the requester closes it.  Never raises.

    ``dispatch(sender, protocol, payload)`` answers one request; raising ``no_handler``
    answers :data:`REASON_NO_HANDLER`, any other exception a reason code.
    ``request_limit(protocol)`` bounds a request's payload for that protocol; ``max_frame``
    bounds an inbound frame, ``max_response`` (default ``max_frame``) an answer.
    """
    out_max = max_frame if max_response is None else max_response
    send_lock = trio.Lock()
    slots = trio.Semaphore(max_concurrent)
    broken = False

    async def answer(req_id: int, body: bytes) -> None:
        nonlocal broken
        try:
            kind, out = KIND_ERROR, REASON_HANDLER_TIMEOUT.encode()
            with trio.move_on_after(handler_timeout):
                try:
                    protocol, payload = decode_request(body)
                    if request_limit is not None and len(payload) > request_limit(protocol):
                        counters.add("requests_too_large")
                        kind, out = KIND_ERROR, REASON_BAD_REQUEST.encode()
                    else:
                        counters.add("requests_served")
                        kind, out = KIND_OK, await dispatch(sender, protocol, payload)
                except no_handler:
                    counters.add("requests_unhandled")
                    kind, out = KIND_ERROR, REASON_NO_HANDLER.encode()
                except DecodeError:
                    counters.add("requests_bad")
                    kind, out = KIND_ERROR, REASON_BAD_REQUEST.encode()
                except Exception as exc:  # the handler's failure: a code to the peer, the detail to our log
                    counters.add("requests_failed")
                    logger.debug("handler failed for %s: %r", sender, exc)
                    kind, out = KIND_ERROR, failure_reason(exc).encode()
            if kind == KIND_ERROR and out == REASON_HANDLER_TIMEOUT.encode():
                counters.add("requests_handler_timed_out")
            if len(out) + 9 > out_max:
                kind, out = KIND_ERROR, REASON_TOO_LARGE.encode()
            frame = encode_mux(req_id, kind, out, out_max)
            with trio.CancelScope(shield=True), trio.move_on_after(_WRITE_TIMEOUT) as scope:
                async with send_lock:
                    if not broken:
                        await stream.write(frame)
            if scope.cancelled_caught:
                broken = True
        except Exception as exc:  # the stream broke under us: the requester sees it too
            broken = True
            logger.debug("answering on a channel from %s: %r", sender, exc)
        finally:
            slots.release()

    splitter = FrameSplitter(max_frame)
    try:
        async with trio.open_nursery() as nursery:
            try:
                while not broken:
                    chunk = await stream.read(_READ_CHUNK)
                    if not chunk:
                        break
                    for frame in splitter.feed(chunk):
                        req_id, kind, body = decode_mux(frame)
                        if kind != KIND_REQUEST:
                            raise DecodeError("a response frame on the server's side of a channel")
                        await slots.acquire()  # all handlers busy: stop reading (flow control)
                        nursery.start_soon(answer, req_id, body)
            except DecodeError as exc:
                counters.add("requests_bad")
                logger.debug("bad channel from %s: %s", sender, exc)
                broken = True
            except (EdgenodeError, trio.BrokenResourceError, trio.ClosedResourceError):
                broken = True
            except Exception as exc:  # EOF, reset: py-libp2p raises many types
                logger.debug("channel from %s ended: %r", sender, exc)
            # the requester half-closed (or broke): finish what is running, then close
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            await (reset_quietly(stream) if broken else close_quietly(stream))
