"""The one way a component keeps background tasks: a :class:`TaskSet`.

A component that starts tasks it does not await at once (topic followers, handshakes,
request handlers, FL runs) keeps them in a :class:`TaskSet`: it holds a strong reference
to each until it ends, can wait for them to settle, and cancels and awaits them all on
stop.  A set made with a ``spawner`` (a runtime's :class:`asyncio.TaskGroup` spawn) starts
its tasks in that group, so an unexpected error ends the runtime instead of dying silently
in a forgotten task.

This module imports nothing of edgenode: every layer may use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["TaskSet", "Spawner"]

Spawner = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None] | None"]
"""Starts a coroutine as a task somewhere (a task group) or closes it and answers None."""


class TaskSet:
    """Background tasks of one component.

    ``spawner``: where tasks start (default: the running loop).  ``log``: where an error of a
    task that no group watches is reported when it ends (never silently dropped).
    """

    def __init__(self, spawner: Spawner | None = None, *, log: logging.Logger | None = None) -> None:
        self._spawner = spawner
        self._log = log or logging.getLogger("edgenode")
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task: object) -> bool:
        return task in self._tasks

    def spawn(self, coro: Coroutine[Any, Any, None], *, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start ``coro``.  With ``loop`` (the component's loop), callable from any thread: from
        another thread the task is started on ``loop`` as soon as it runs; a closed loop closes
        ``coro``."""
        if loop is not None:
            if loop.is_closed():
                coro.close()
                return
            try:
                running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not loop:
                loop.call_soon_threadsafe(self._start, coro)
                return
        self._start(coro)

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro) if self._spawner is None else self._spawner(coro)
        if task is None:
            return
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._spawner is None and not task.cancelled() and task.exception() is not None:
            self._log.error("background task failed", exc_info=task.exception())

    async def settle(self) -> None:
        """Wait until no task is left (tasks that start others are waited for too)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def cancel_now(self) -> list[asyncio.Task[None]]:
        """Cancel every task except the one calling (a task may stop its own component); return them."""
        me = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not me]
        for task in tasks:
            task.cancel()
        return tasks

    async def cancel(self) -> None:
        """Cancel every task (but the calling one) and wait for each to end."""
        for task in self.cancel_now():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
