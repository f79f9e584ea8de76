"""Building blocks of the in-memory network: link specs, the event scheduler,
bounded streams and order-independent random draws.

Nothing here reads a clock other than the running asyncio loop's
``loop.time()``, so a virtual-time event loop can drive the whole network.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..errors import LocalError

__all__ = ["LinkSpec", "Delivery", "Scheduler", "Stream", "mix64", "unit_draw"]

_M64 = (1 << 64) - 1
_T = TypeVar("_T")


def mix64(x: int) -> int:
    """SplitMix64's finaliser: a fast, well-spread 64-bit hash of an int."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def unit_draw(seed_key: int, key: int, link: int, salt: int) -> float:
    """A uniform draw in [0, 1) that depends only on its arguments.

    Loss and jitter are drawn per (message, link, purpose) rather than from a
    shared sequential generator, so the outcome of one hop does not depend on
    the order in which the event loop happened to run unrelated events.
    """
    x = (seed_key ^ (key * 0xD6E8FEB86659FD93) ^ (link * 0xA0761D6478BD642F) ^ (salt * 0xE7037ED1A0B428DB)) & _M64
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return ((x ^ (x >> 31)) >> 11) * (1.0 / (1 << 53))


@dataclass(frozen=True)
class LinkSpec:
    """Properties of a simulated link (the same in both directions)."""

    latency_ms: float = 0.0
    """One-way base delay of every message, in milliseconds."""
    jitter_ms: float = 0.0
    """Each message's delay is ``latency_ms`` plus a uniform draw in ``[-jitter_ms, +jitter_ms]``
    (never below zero); jitter can reorder messages on a link."""
    loss: float = 0.0
    """Probability in [0, 1] that one message (a gossip hop, a request or a response) is lost."""
    bandwidth_bps: float | None = None
    """Bits per second in each direction; ``None`` is unlimited.  A message of ``n`` bytes
    occupies its direction of the link for ``8 * n / bandwidth_bps`` seconds, and messages
    queue behind each other."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.latency_ms) and self.latency_ms >= 0):
            raise LocalError(f"latency_ms must be finite and >= 0, not {self.latency_ms}")
        if not (math.isfinite(self.jitter_ms) and self.jitter_ms >= 0):
            raise LocalError(f"jitter_ms must be finite and >= 0, not {self.jitter_ms}")
        if not 0.0 <= self.loss <= 1.0:
            raise LocalError(f"loss must be in [0, 1], not {self.loss}")
        if self.bandwidth_bps is not None and not (math.isfinite(self.bandwidth_bps) and self.bandwidth_bps > 0):
            raise LocalError(f"bandwidth_bps must be > 0 or None, not {self.bandwidth_bps}")

        perfect = self.latency_ms == 0 and self.jitter_ms == 0 and self.loss == 0 and self.bandwidth_bps is None
        object.__setattr__(self, "perfect", perfect)

    perfect: bool = field(init=False, repr=False, compare=False, default=False)
    """Derived: no latency, jitter, loss or bandwidth limit."""


@dataclass(frozen=True)
class Delivery:
    """One gossip message delivered to one node, as seen by a network observer."""

    peer: str
    """The receiving node."""
    topic: str
    origin: str
    """The node that published the message."""
    seqno: int
    """The publisher's sequence number of the message (1, 2, ...); ``(origin, seqno)`` names it."""
    hops: int
    """Links the delivered copy crossed (1 for a direct neighbour of the publisher)."""
    published_at: float
    """Simulated time of the publish (the event loop's clock, in seconds)."""
    delivered_at: float
    """Simulated time the copy reached ``peer``."""


_Event = tuple[float, int, Callable[..., None], tuple[Any, ...]]


class Scheduler:
    """A heap of timed callbacks driven by one asyncio timer.

    Events run in order of (simulated time, insertion order), and each runs
    with :meth:`now` equal to its own scheduled time even if the loop is late,
    so chains of network events are timed exactly and deterministically.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_batch: int = 20_000) -> None:
        self._loop = loop
        self._heap: list[_Event] = []
        self._seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._current: float | None = None
        self._max_batch = max_batch
        self._idle: list[asyncio.Future[None]] = []

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def now(self) -> float:
        """Simulated time: the running event's time, else the loop's clock."""
        cur = self._current
        return self._loop.time() if cur is None else cur

    def pending(self) -> int:
        """Events not yet run."""
        return len(self._heap)

    def call_at(self, when: float, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, fn, args))
        if when < self._timer_at:
            self._arm(when)

    def call_later(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        self.call_at(self.now() + delay, fn, *args)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._run)
        self._timer_at = when

    def _run(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        heap = self._heap
        limit = self._loop.time() + 1e-6
        budget = self._max_batch
        try:
            while heap and heap[0][0] <= limit and budget > 0:
                when, _seq, fn, args = heapq.heappop(heap)
                self._current = when
                fn(*args)
                budget -= 1
        finally:
            self._current = None
            if heap:
                self._arm(heap[0][0])
            else:
                self._wake_idle()

    def _wake_idle(self) -> None:
        waiters, self._idle = self._idle, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_idle(self) -> None:
        """Return once no event is pending."""
        while self._heap:
            fut = self._loop.create_future()
            self._idle.append(fut)
            await fut


class Stream(Generic[_T]):
    """A bounded async iterator fed synchronously by the network.

    ``put`` never blocks: when the buffer is full it returns False and the
    caller counts the drop.  ``close`` ends the stream once it is drained;
    ``aclose`` (the consumer's side) drops what is buffered and detaches.
    """

    def __init__(self, maxsize: int, on_aclose: Callable[[Stream[_T]], None] | None = None) -> None:
        self._items: deque[_T] = deque()
        self._maxsize = maxsize
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._on_aclose = on_aclose

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: _T) -> bool:
        if self._closed or len(self._items) >= self._maxsize:
            return False
        self._items.append(item)
        self._wake()
        return True

    def clear(self) -> None:
        """Drop everything buffered (a crashed node loses its queues)."""
        self._items.clear()

    def close(self) -> None:
        """End the stream after what is buffered."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def __aiter__(self) -> Stream[_T]:
        return self

    async def __anext__(self) -> _T:
        while True:
            if self._items:
                return self._items.popleft()
            if self._closed:
                raise StopAsyncIteration
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiter = fut
            try:
                await fut
            finally:
                self._waiter = None

    async def aclose(self) -> None:
        """Stop receiving (unsubscribe); buffered items are dropped."""
        self._items.clear()
        self.close()
        cb, self._on_aclose = self._on_aclose, None
        if cb is not None:
            cb(self)
