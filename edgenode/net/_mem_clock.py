"""A virtual-time asyncio event loop for running memnet faster than real time.

Waiting for the next timer moves the loop's clock forward instead of sleeping,
so simulated seconds cost only the CPU their events need, and runs replay
exactly (application inputs happen at virtual times too).  Only for code that
stays inside the loop: a thread or socket whose result is awaited would be
overtaken by the jumping clock, and a loop with nothing scheduled raises
instead of blocking forever.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..errors import LocalError

__all__ = ["VirtualTimeLoop", "run_virtual"]

_T = TypeVar("_T")


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if not ready:
            if timeout is None:
                raise LocalError("virtual-time loop has nothing scheduled and would block forever")
            self.now += max(timeout, 0.0)
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` starts at 0 and jumps to the next timer when idle."""

    def __init__(self) -> None:
        self._vsel = _VirtualSelector()
        super().__init__(self._vsel)

    def time(self) -> float:
        return self._vsel.now


def run_virtual(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion on a fresh :class:`VirtualTimeLoop` (like ``asyncio.run``)."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
