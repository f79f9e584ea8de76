"""Nodes run on the virtual-time loop: an hour of a swarm's life in well under a second of CPU.

Every duration and deadline in the node reads the injected clock's monotonic time and every
signed timestamp its wall time; sleeps are the loop's.  With a :class:`LoopClock` on a
:class:`VirtualTimeLoop` all of them follow the virtual clock, so periodic adverts, head
announcements, spec expiry and attempt deadlines behave as they would over a real hour.
"""

from __future__ import annotations

import asyncio
import hashlib

from edgenode.clock import LoopClock, ManualClock
from edgenode.config import NodeConfig
from edgenode.identity import Identity
from edgenode.net.memnet import MemNetwork, run_virtual
from edgenode.node import NodeTiming
from edgenode.runtime import build_runtime
from edgenode.sandbox import Limits, RunResult, Status, TaskIO
from edgenode.tasks import Submitter, TaskRequest
from ledger import MemoryLedgerStore

MODULE = hashlib.sha256(b"echo").hexdigest()
WALL0 = 1_800_000_000_000


class EchoEngine:
    """A WASM engine that echoes stdin, inline on the loop (``in_loop``): no thread to outrun."""

    in_loop = True

    def __init__(self) -> None:
        self.runs = 0

    def has_module(self, module_hash: str) -> bool:
        return module_hash == MODULE

    def compile(self, module: bytes) -> str:
        return MODULE

    def run(self, module_hash: str, io: TaskIO, limits: Limits) -> RunResult:
        self.runs += 1
        return RunResult(Status.OK, 0, io.stdin, b"", 1, 0.0, None, module_hash, limits)


async def _an_hour(minutes: int) -> tuple[float, list[str], list[int], int, set[str], list[int]]:
    loop = asyncio.get_running_loop()
    clock = LoopClock(WALL0)
    net = MemNetwork()
    engines = [EchoEngine() for _ in range(3)]
    runtimes = []
    for eng in engines:
        ident = Identity.generate()
        runtimes.append(build_runtime(ident, NodeConfig(), net.add_node(ident), MemoryLedgerStore(), sandbox=eng,
                                      clock=clock, timing=NodeTiming(advert_s=10.0, head_s=2.0), fl=False))
    for rt in runtimes:
        await rt.start()
    net.full_mesh([rt.peer_id for rt in runtimes])
    me = Identity.generate()
    t = net.add_node(me)
    await t.start()
    sub = Submitter(me, t, clock=clock, follow_adverts=True)
    await sub.join([rt.node.transport.listen_addrs[0] for rt in runtimes])
    outputs = []
    for i in range(minutes):
        out = await sub.submit(TaskRequest("wasm", MODULE, f"minute {i}".encode(), deadline_ms=30_000))
        outputs.append(out.output.decode())
        await asyncio.sleep(60.0)
    live = {a.peer_id for a in sub.adverts.live(clock.now_ms())}
    heights = [rt.node.chain.height for rt in runtimes]
    wall_seen = clock.now_ms() - WALL0
    for rt in runtimes:
        await rt.stop()
    await sub.close()
    await t.stop()
    return loop.time(), outputs, heights, sum(e.runs for e in engines), live, [wall_seen]


def test_an_hour_of_swarm_time_on_the_virtual_loop() -> None:
    elapsed, outputs, heights, runs, live, (wall_seen,) = run_virtual(_an_hour(60))
    assert elapsed >= 3600.0  # an hour of virtual time passed...
    assert wall_seen >= 3_600_000  # ...on the signed clock too (the wall reading follows the loop)
    assert outputs == [f"minute {i}" for i in range(60)]
    assert runs == sum(heights) == 60  # each task ran once and was recorded once
    assert len(live) == 3  # adverts kept refreshing through the hour: none expired


def test_manual_clock_steps_wall_time_alone() -> None:
    c = ManualClock(wall_ms=1000)
    c.advance(250)
    c.step_wall(-10_000)  # an NTP step back
    assert (c.now_ms(), c.monotonic_ms()) == (-8750, 250.0)
