"""The persistent request channel (``/edgenode/rpc/2``) on its own, over in-memory trio streams.

The channel classes are duck-typed over ``read/write/close/reset``; here they run over a
pair of trio memory streams, so pipelining, back-pressure, failure and hostile frames are
tested without libp2p (the real-libp2p behaviour is in ``test_p2p.py``).
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from edgenode.errors import DecodeError, RemoteError
from edgenode.net._p2p_channel import ChannelClosed, ClientChannel, serve_channel
from edgenode.net._p2p_frame import KIND_OK, KIND_REQUEST, FrameSplitter, decode_mux, encode_mux, encode_request
from edgenode.net._transport import REASON_BAD_REQUEST, REASON_HANDLER_FAILED, REASON_NO_HANDLER

MAX = 1 << 20


def trio_test(fn: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """Run an async test body under trio (the suite's own async tests run under asyncio)."""

    def run() -> None:
        trio.run(fn)

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


class Pipe:
    """One end of an in-memory full-duplex byte stream with the libp2p stream surface."""

    def __init__(self, stream: trio.testing.MemoryStapledStream) -> None:  # type: ignore[name-defined]
        self._s = stream
        self.reset_called = False

    async def read(self, n: int | None = None) -> bytes:
        return bytes(await self._s.receive_some(n or 65536))

    async def write(self, data: bytes) -> None:
        await self._s.send_all(data)

    async def close(self) -> None:
        await self._s.send_eof()

    async def reset(self) -> None:
        self.reset_called = True
        await self._s.aclose()


class Tally:
    def __init__(self) -> None:
        self.c: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        self.c[name] += n


class NoHandlerError(Exception):
    pass


def pair() -> tuple[Pipe, Pipe]:
    a, b = trio.testing.memory_stream_pair()
    return Pipe(a), Pipe(b)


Dispatch = Callable[[str, str, bytes], Awaitable[bytes]]


async def serve(nursery: trio.Nursery, end: Pipe, dispatch: Dispatch, tally: Tally, max_concurrent: int = 8) -> None:
    nursery.start_soon(
        lambda: serve_channel(end, "peerA", dispatch, max_frame=MAX, max_concurrent=max_concurrent,
                              handler_timeout=5.0, counters=tally, no_handler=NoHandlerError)
    )


@trio_test
async def test_many_requests_in_flight_answered_out_of_order() -> None:
    gates = {i: trio.Event() for i in range(20)}

    async def dispatch(sender: str, protocol: str, payload: bytes) -> bytes:
        i = int(payload)
        await gates[i].wait()
        return f"{protocol}:{sender}:{i}".encode()

    tally = Tally()
    results: dict[int, bytes] = {}
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            client_end, server_end = pair()
            await serve(n, server_end, dispatch, tally, max_concurrent=32)
            ch = ClientChannel("peerB", client_end, MAX, 64, tally)
            n.start_soon(ch.run_reader)

            async def one(i: int) -> None:
                ok, body = await ch.request("/p/1", str(i).encode())
                assert ok
                results[i] = body

            async with trio.open_nursery() as reqs:
                for i in range(20):
                    reqs.start_soon(one, i)
                await trio.testing.wait_all_tasks_blocked()
                for i in reversed(range(20)):  # answer in the reverse order of asking
                    gates[i].set()
                    await trio.testing.wait_all_tasks_blocked()
            await ch.aclose()
    assert results == {i: f"/p/1:peerA:{i}".encode() for i in range(20)}
    assert tally.c["requests_served"] == 20


@trio_test
async def test_server_runs_at_most_max_concurrent_handlers() -> None:
    running = 0
    peak = 0
    release = trio.Event()

    async def dispatch(_s: str, _p: str, payload: bytes) -> bytes:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        return payload

    tally = Tally()
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            client_end, server_end = pair()
            await serve(n, server_end, dispatch, tally, max_concurrent=3)
            ch = ClientChannel("peerB", client_end, MAX, 64, tally)
            n.start_soon(ch.run_reader)
            async with trio.open_nursery() as reqs:
                for i in range(10):
                    reqs.start_soon(ch.request, "/p/1", bytes([i]))
                await trio.testing.wait_all_tasks_blocked()
                assert peak == 3  # the other seven wait unread in the stream
                release.set()
            await ch.aclose()
    assert tally.c["requests_served"] == 10


@trio_test
async def test_client_bounds_requests_in_flight() -> None:
    seen = 0
    release = trio.Event()

    async def dispatch(_s: str, _p: str, payload: bytes) -> bytes:
        nonlocal seen
        seen += 1
        await release.wait()
        return payload

    tally = Tally()
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            client_end, server_end = pair()
            await serve(n, server_end, dispatch, tally, max_concurrent=50)
            ch = ClientChannel("peerB", client_end, MAX, 4, tally)
            n.start_soon(ch.run_reader)
            async with trio.open_nursery() as reqs:
                for i in range(12):
                    reqs.start_soon(ch.request, "/p/1", bytes([i]))
                await trio.testing.wait_all_tasks_blocked()
                assert seen == 4
                release.set()
            await ch.aclose()
    assert seen == 12


@trio_test
async def test_handler_failures_travel_as_reason_codes_not_text() -> None:
    async def dispatch(_s: str, protocol: str, payload: bytes) -> bytes:
        if protocol == "/none/1":
            raise NoHandlerError(protocol)
        if payload == b"bad":
            raise DecodeError("secret detail about our parser")
        raise RuntimeError("secret detail: /home/node/key")

    tally = Tally()
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            client_end, server_end = pair()
            await serve(n, server_end, dispatch, tally)
            ch = ClientChannel("peerB", client_end, MAX, 8, tally)
            n.start_soon(ch.run_reader)
            assert await ch.request("/none/1", b"") == (False, REASON_NO_HANDLER.encode())
            assert await ch.request("/p/1", b"bad") == (False, REASON_BAD_REQUEST.encode())
            assert await ch.request("/p/1", b"boom") == (False, REASON_HANDLER_FAILED.encode())
            await ch.aclose()
    assert issubclass(DecodeError, RemoteError)


@trio_test
async def test_broken_channel_fails_waiting_requests_and_refuses_new_ones() -> None:
    started = trio.Event()

    async def dispatch(_s: str, _p: str, _payload: bytes) -> bytes:
        started.set()
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    tally = Tally()
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            client_end, server_end = pair()
            server_scope = trio.CancelScope()

            async def server() -> None:
                with server_scope:
                    await serve_channel(server_end, "peerA", dispatch, max_frame=MAX, max_concurrent=4,
                                        handler_timeout=60.0, counters=tally, no_handler=NoHandlerError)

            n.start_soon(server)
            ch = ClientChannel("peerB", client_end, MAX, 8, tally)
            n.start_soon(ch.run_reader)
            errors: list[ChannelClosed] = []

            async def waiting() -> None:
                try:
                    await ch.request("/p/1", b"x")
                except ChannelClosed as exc:
                    errors.append(exc)

            n.start_soon(waiting)
            await started.wait()
            server_scope.cancel()  # the server goes away and resets the stream
            await trio.testing.wait_all_tasks_blocked()
            assert len(errors) == 1 and errors[0].sent
            with pytest.raises(ChannelClosed) as info:
                await ch.request("/p/1", b"y")
            assert not info.value.sent
            assert ch.closed


@trio_test
async def test_server_resets_a_channel_that_sends_garbage() -> None:
    async def dispatch(_s: str, _p: str, payload: bytes) -> bytes:
        return payload

    tally = Tally()
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            client_end, server_end = pair()
            done = trio.Event()

            async def server() -> None:
                await serve_channel(server_end, "peerA", dispatch, max_frame=1024, max_concurrent=4,
                                    handler_timeout=5.0, counters=tally, no_handler=NoHandlerError)
                done.set()

            n.start_soon(server)
            # a frame announcing more than the limit: refused before any of it is buffered
            await client_end.write(struct.pack(">I", 1 << 30) + b"\0" * 16)
            await done.wait()
    assert server_end.reset_called
    assert tally.c["requests_bad"] == 1


@trio_test
async def test_request_limit_per_protocol() -> None:
    async def dispatch(_s: str, _p: str, payload: bytes) -> bytes:
        return payload

    tally = Tally()
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            client_end, server_end = pair()
            n.start_soon(
                lambda: serve_channel(server_end, "peerA", dispatch, max_frame=MAX, max_concurrent=4,
                                      handler_timeout=5.0, counters=tally, no_handler=NoHandlerError,
                                      request_limit=lambda p: 8 if p == "/small/1" else MAX)
            )
            ch = ClientChannel("peerB", client_end, MAX, 8, tally)
            n.start_soon(ch.run_reader)
            assert await ch.request("/small/1", b"12345678") == (True, b"12345678")
            assert await ch.request("/small/1", b"123456789") == (False, REASON_BAD_REQUEST.encode())
            assert await ch.request("/big/1", b"123456789") == (True, b"123456789")
            await ch.aclose()
    assert tally.c["requests_too_large"] == 1


def test_frame_splitter_yields_each_frame_once_across_chunk_boundaries() -> None:
    frames = [encode_mux(i, KIND_REQUEST, encode_request("/p/1", bytes(i)), MAX) for i in range(1, 6)]
    blob = b"".join(frames)
    for cut in range(1, 9):
        sp = FrameSplitter(MAX)
        got: list[bytes] = []
        for i in range(0, len(blob), cut):
            got += sp.feed(blob[i : i + cut])
        assert [decode_mux(f)[0] for f in got] == [1, 2, 3, 4, 5]
        assert sp.pending == 0
    assert decode_mux(encode_mux(7, KIND_OK, b"x", MAX)[4:]) == (7, KIND_OK, b"x")
    with pytest.raises(DecodeError):
        decode_mux(b"\0\0\0\1\x09")
    with pytest.raises(DecodeError):
        decode_mux(b"\0\0")
