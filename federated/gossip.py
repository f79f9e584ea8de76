"""An asyncio driver for a :class:`~federated.rounds.RoundEngine` over publish/subscribe callables.

Thin: it feeds the engine the bytes heard on the model's topic and the clock,
wakes it at its deadline, publishes what it says to publish and hands every
event to ``on_event``.  It knows no transport: pass ``publish(data)`` and an
async iterator of incoming update bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable

from .rounds import Event, PublishUpdate, RoundDone, RoundEngine

__all__ = ["GossipDriver", "Clock"]

Clock = Callable[[], float]
"""Returns the current time in seconds (e.g. ``loop.time``)."""


class GossipDriver:
    """Runs one engine until it finishes (``max_rounds``) or :meth:`stop` is called."""

    def __init__(
        self,
        engine: RoundEngine,
        *,
        publish: Callable[[bytes], Awaitable[None]],
        incoming: AsyncIterator[bytes],
        clock: Clock,
        on_event: Callable[[Event], Awaitable[None] | None] | None = None,
    ) -> None:
        self.engine = engine
        self._publish = publish
        self._incoming = incoming
        self._clock = clock
        self._on_event = on_event
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self.history: list[RoundDone] = []
        """Rounds closed so far, in order."""

    def stop(self) -> None:
        """Ask :meth:`run` to return after the event it is handling."""
        self._stopping.set()

    async def _pump(self) -> None:
        async for data in self._incoming:
            self._queue.put_nowait(data)

    async def _handle(self, events: list[Event]) -> None:
        for ev in events:
            if isinstance(ev, PublishUpdate):
                await self._publish(ev.data)
            elif isinstance(ev, RoundDone):
                self.history.append(ev)
            if self._on_event is not None:
                res = self._on_event(ev)
                if inspect.isawaitable(res):
                    await res

    async def run(self) -> list[RoundDone]:
        """Drive the engine; returns the closed rounds.  Bounded: every round ends by its deadline."""
        pump = asyncio.create_task(self._pump())
        stop_wait = asyncio.create_task(self._stopping.wait())
        try:
            await self._handle(self.engine.start(self._clock()))
            while not self.engine.finished and not self._stopping.is_set():
                deadline = self.engine.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - self._clock())
                get = asyncio.create_task(self._queue.get())
                done, _ = await asyncio.wait({get, stop_wait}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                data: bytes | None = None
                if get in done:
                    data = get.result()
                else:
                    get.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        data = await get  # it may have completed just before the cancel
                if data is not None:
                    await self._handle(self.engine.receive(data, self._clock()))
                else:
                    await self._handle(self.engine.handle_timer(self._clock()))
        finally:
            for task in (pump, stop_wait):
                task.cancel()
            await asyncio.gather(pump, stop_wait, return_exceptions=True)
        return self.history
