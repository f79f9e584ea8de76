"""The asyncio <-> trio-thread bridge under net.p2p, without libp2p."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import trio

from edgenode.net import NotRunning
from edgenode.net._p2p_bridge import TrioThread

WAIT = 10.0


async def idle(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    await trio.sleep_forever()


async def started_bridge() -> TrioThread:
    bridge = TrioThread("test-bridge")
    await bridge.start(idle, WAIT)
    return bridge


async def test_call_runs_in_the_trio_thread_and_returns() -> None:
    bridge = await started_bridge()
    try:

        async def where(x: int) -> tuple[str, int, bool]:
            await trio.lowlevel.checkpoint()
            return threading.current_thread().name, x * 2, trio.lowlevel.current_task() is not None

        name, doubled, in_trio = await bridge.call(where, 21)
        assert (name, doubled, in_trio) == ("test-bridge", 42, True)
        assert threading.current_thread().name != "test-bridge"
    finally:
        await bridge.stop(WAIT)


async def test_exceptions_cross_the_bridge() -> None:
    bridge = await started_bridge()
    try:

        async def boom() -> None:
            raise KeyError("from trio")

        with pytest.raises(KeyError, match="from trio"):
            await bridge.call(boom)

        # the loop survives a failed call
        async def one() -> int:
            return 1

        assert await bridge.call(one) == 1
    finally:
        await bridge.stop(WAIT)


async def test_cancelling_the_asyncio_waiter_cancels_the_trio_task() -> None:
    bridge = await started_bridge()
    cancelled = threading.Event()
    entered = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:

        async def forever() -> None:
            loop.call_soon_threadsafe(entered.set)
            try:
                await trio.sleep_forever()
            finally:
                cancelled.set()

        task = asyncio.ensure_future(bridge.call(forever))
        async with asyncio.timeout(WAIT):
            await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(cancelled.wait, WAIT)
    finally:
        await bridge.stop(WAIT)


async def test_stop_fails_pending_calls_with_not_running() -> None:
    bridge = await started_bridge()
    entered = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def forever() -> None:
        loop.call_soon_threadsafe(entered.set)
        await trio.sleep_forever()

    task = asyncio.ensure_future(bridge.call(forever))
    async with asyncio.timeout(WAIT):
        await entered.wait()
    await bridge.stop(WAIT)
    with pytest.raises(NotRunning):
        await task
    with pytest.raises(NotRunning):
        await bridge.call(forever)
    assert bridge.error is None


async def test_call_asyncio_and_post_reach_the_asyncio_loop() -> None:
    bridge = await started_bridge()
    main = threading.current_thread().name
    seen: list[str] = []
    try:

        async def on_asyncio(x: int) -> str:
            await asyncio.sleep(0)
            return f"{threading.current_thread().name}:{x}"

        async def from_trio() -> str:
            bridge.post(seen.append, threading.current_thread().name)
            return await bridge.call_asyncio(on_asyncio, 7)

        assert await bridge.call(from_trio) == f"{main}:7"
        assert seen == ["test-bridge"]
    finally:
        await bridge.stop(WAIT)


async def test_a_failing_start_raises_in_the_starter() -> None:
    async def broken(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        raise OSError("port taken")

    bridge = TrioThread("test-broken")
    with pytest.raises(OSError, match="port taken"):
        await bridge.start(broken, WAIT)
    with pytest.raises(NotRunning):
        await bridge.start(idle, WAIT)


async def test_errors_wrapped_by_nurseries_reach_the_starter_unwrapped() -> None:
    async def nested(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async def fail() -> None:
            raise LookupError("deep")

        async with trio.open_nursery() as inner:
            inner.start_soon(fail)

    bridge = TrioThread("test-nested")
    with pytest.raises(LookupError, match="deep"):
        await bridge.start(nested, WAIT)
