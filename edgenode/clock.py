"""The node's one clock: wall time for signed timestamps, monotonic time for everything else.

Two readings, never mixed:

* :meth:`Clock.now_ms` is wall time (unix milliseconds).  It goes into what is signed and
  compared across machines: a spec's ``issued_ms``/``expires_ms``, an advert's ``issued_ms``,
  a ledger entry's timestamp, a certificate's validity.  An NTP step moves it.
* :meth:`Clock.monotonic_ms` never goes back.  Durations (task run time, round trip times,
  latencies) and local deadlines (an attempt's, a refresh interval) use it only.

:class:`SystemClock` reads the machine's clocks.  :class:`LoopClock` reads the running
asyncio loop's ``time()`` for both (the wall reading offset by the wall time at its first
use), so nodes run on :class:`edgenode.net.memnet.VirtualTimeLoop`, where simulated hours
pass in seconds: sleeps, deadlines and signed timestamps all follow the virtual clock.

This module imports nothing of edgenode: every layer may use it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock", "LoopClock", "ManualClock"]


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall time, unix milliseconds: only for timestamps that are signed or compared across nodes."""
        ...

    def monotonic_ms(self) -> float:
        """Milliseconds from an arbitrary start, never going back: durations and local deadlines."""
        ...


class SystemClock:
    """The machine's clocks (``time.time_ns`` and ``time.monotonic_ns``)."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic_ms(self) -> float:
        return time.monotonic_ns() / 1_000_000


class LoopClock:
    """The running asyncio loop's clock: virtual time on a virtual-time loop.

    ``now_ms`` is ``wall0_ms`` plus the loop's time (``wall0_ms`` defaults to the machine's
    wall time when the clock is made), so signed timestamps stay plausible while following
    the loop.  Read it from inside the loop only.
    """

    def __init__(self, wall0_ms: int | None = None) -> None:
        self.wall0_ms = time.time_ns() // 1_000_000 if wall0_ms is None else wall0_ms

    def monotonic_ms(self) -> float:
        return asyncio.get_running_loop().time() * 1000.0

    def now_ms(self) -> int:
        return self.wall0_ms + int(self.monotonic_ms())


class ManualClock:
    """A clock that moves only when told (tests and sans-IO drivers): both readings advance
    together with :meth:`advance`; :meth:`step_wall` moves wall time alone, as NTP does."""

    def __init__(self, wall_ms: int = 0, monotonic_ms: float = 0.0) -> None:
        self.wall_ms = wall_ms
        self.mono_ms = monotonic_ms

    def now_ms(self) -> int:
        return self.wall_ms

    def monotonic_ms(self) -> float:
        return self.mono_ms

    def advance(self, ms: float) -> None:
        if ms < 0:
            raise ValueError("a monotonic clock does not go back")
        self.mono_ms += ms
        self.wall_ms += int(ms)

    def step_wall(self, ms: int) -> None:
        self.wall_ms += ms
