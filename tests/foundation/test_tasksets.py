"""TaskSet: the one way components keep background tasks."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from edgenode.tasksets import TaskSet


async def test_tasks_are_kept_until_they_end_and_settle_waits_for_children() -> None:
    ts = TaskSet()
    done: list[str] = []

    async def child() -> None:
        await asyncio.sleep(0.01)
        done.append("child")

    async def parent() -> None:
        ts.spawn(child())
        done.append("parent")

    ts.spawn(parent())
    assert len(ts) == 1
    await asyncio.wait_for(ts.settle(), 5)
    assert done == ["parent", "child"] and len(ts) == 0


async def test_cancel_waits_for_every_task_but_the_caller() -> None:
    ts = TaskSet()
    cancelled: list[int] = []
    stopper_ran = asyncio.Event()

    async def forever(i: int) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    async def stopper() -> None:
        await ts.cancel()  # a task may stop its own component without cancelling itself
        stopper_ran.set()

    for i in range(3):
        ts.spawn(forever(i))
    await asyncio.sleep(0)
    ts.spawn(stopper())
    await asyncio.wait_for(stopper_ran.wait(), 5)
    assert sorted(cancelled) == [0, 1, 2]


async def test_a_failure_is_logged_not_lost(caplog: pytest.LogCaptureFixture) -> None:
    ts = TaskSet(log=logging.getLogger("edgenode.test"))

    async def boom() -> None:
        raise ValueError("lost?")

    with caplog.at_level(logging.ERROR, logger="edgenode.test"):
        ts.spawn(boom())
        await ts.settle()
    assert any("background task failed" in r.message and r.exc_info for r in caplog.records)


async def test_a_spawner_places_the_tasks_and_may_refuse() -> None:
    async with asyncio.TaskGroup() as tg:
        open_ = [True]

        def spawner(coro):  # type: ignore[no-untyped-def]
            if not open_[0]:
                coro.close()
                return None
            return tg.create_task(coro)

        ts = TaskSet(spawner)
        ran: list[int] = []

        async def job(i: int) -> None:
            ran.append(i)

        ts.spawn(job(1))
        await ts.settle()
        open_[0] = False
        ts.spawn(job(2))  # refused: closed, never started, never counted
        assert len(ts) == 0
    assert ran == [1]


async def test_spawn_from_another_thread_runs_on_the_components_loop() -> None:
    ts = TaskSet()
    loop = asyncio.get_running_loop()
    seen = asyncio.Event()
    where: list[object] = []

    async def job() -> None:
        where.append(asyncio.get_running_loop())
        seen.set()

    t = threading.Thread(target=lambda: ts.spawn(job(), loop=loop))
    t.start()
    t.join(5)
    await asyncio.wait_for(seen.wait(), 5)
    assert where == [loop]
