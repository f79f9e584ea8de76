"""Drain moves running tasks with safe points: checkpoint, hand over, resume elsewhere, one verified result.

Two executors and a submitter over memnet, real sandbox and SQLite ledgers. The executor
that runs the task is stopped mid-run; the submitter's one ``submit`` sees the other
executor's receipt (in the first one's handover), with the output of an uninterrupted run.
A drain order (``edgenode drain``) and a low battery (``[node] drain_when``, a fake sysfs)
drain a node the same way, then ask for its stop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TypeVar

import pytest

from edgenode import wire
from edgenode.config import NodeSection
from edgenode.identity import Identity
from edgenode.node import Node
from edgenode.protocol import RESULT_KIND, TaskLimits, TaskRecord
from edgenode.reasons import Reason
from edgenode.sandbox import Limits, RunResult, TaskIO, have_wasm_opt
from edgenode.tasks import (
    CHECKPOINT_KIND,
    MOVE_PROTOCOL,
    RESUMED_KIND,
    CheckpointRecord,
    DrainDone,
    DrainOrder,
    MoveDone,
    MoveOrder,
    ResumedRecord,
    Submitter,
    TaskOutcome,
    TaskRequest,
    arch_capability,
)
from ledger import Entry, verify_store

from .conftest import Swarm, SwarmFactory

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not have_wasm_opt(), reason="binaryen's wasm-opt is not installed (scripts/setup.sh)"),
]

# About a second of work on this machine: long enough to be caught running, short enough for the suite.
STDIN = b"4000 4 12 " + b" ".join(str(i * 7919 % 1000003).encode() for i in range(2000))
LIMITS = TaskLimits(fuel=8_000_000_000, timeout_ms=30_000, memory_mb=64)
A = TypeVar("A")


async def _entries(node: Node) -> list[Entry]:
    out = []
    for seq in range(1, node.chain.height + 1):
        entry = await node.store.get(node.identity.public_key, seq)
        assert entry is not None
        out.append(entry)
    return out


def _baseline(sw: Swarm, migrate_wasm: bytes) -> RunResult:
    result = sw.sandbox.run(sw.sandbox.compile(migrate_wasm), TaskIO(stdin=STDIN),
                            Limits(LIMITS.fuel, LIMITS.timeout_ms, LIMITS.memory_mb))
    assert result.ok
    return result


async def _start_long_task(
    sw: Swarm, migrate_wasm: bytes, checkpoint_ms: int = 0
) -> tuple[asyncio.Task[TaskOutcome], Submitter, Node]:
    """Submit the long task; return the submission, the submitter and the node running it."""
    sub = await sw.client()
    module = sub.add_module(migrate_wasm)
    job = asyncio.create_task(sub.submit(TaskRequest("wasm", module, input=STDIN, limits=LIMITS,
                                                     deadline_ms=60_000, checkpoint_ms=checkpoint_ms)))
    running: list[Node] = []
    for _ in range(2000):  # bounded: at most 20 s for the task to start somewhere
        running = [n for n in sw.nodes if n.executor.migratable_running()]
        if running or job.done():
            break
        await asyncio.sleep(0.01)
    assert running, "the task never ran"
    return job, sub, running[0]


async def test_drain_hands_a_running_task_to_another_executor(
    swarm_factory: SwarmFactory, migrate_wasm: bytes
) -> None:
    sw = await swarm_factory(2)
    baseline = _baseline(sw, migrate_wasm)
    job, _sub, first = await _start_long_task(sw, migrate_wasm)
    second = next(n for n in sw.nodes if n is not first)
    report = await first.stop(close_store=False)
    assert report is not None and report.handed_back == 0
    out = await asyncio.wait_for(job, 60)
    assert out.ok and out.output == baseline.stdout
    assert out.executor == second.peer_id and out.attempts == 1
    assert first.executor.counts["migrated"] == 1 and second.executor.counts["resumed"] == 1
    # The hops in the ledgers: a checkpoint on the first, then a resume and the result on the second.
    (ckpt,) = [e for e in await _entries(first) if e.kind == CHECKPOINT_KIND]
    hop = wire.from_bytes(CheckpointRecord, ckpt.body or b"")
    assert hop.to == second.peer_id and hop.fuel_used > 0
    kinds = [e.kind for e in await _entries(second)]
    assert kinds[-2:] == [RESUMED_KIND, RESULT_KIND]
    later = await _entries(second)
    resumed = wire.from_bytes(ResumedRecord, later[-2].body or b"")
    result = wire.from_bytes(TaskRecord, later[-1].body or b"")
    assert resumed.snapshot == hop.snapshot and resumed.sender == first.peer_id
    assert result.fuel_used >= baseline.fuel_used and (out.receipts[0].entry.hash == later[-1].hash)
    assert (await verify_store(first.store)).ok and (await verify_store(second.store)).ok


async def test_a_crashed_executor_loses_at_most_one_checkpoint_interval(
    swarm_factory: SwarmFactory, migrate_wasm: bytes
) -> None:
    sw = await swarm_factory(2)
    baseline = _baseline(sw, migrate_wasm)
    job, sub, victim = await _start_long_task(sw, migrate_wasm, checkpoint_ms=100)
    for _ in range(2000):  # bounded: at most 20 s for two snapshots to arrive
        if sub.snapshots.received >= 2 or job.done():
            break
        await asyncio.sleep(0.01)
    assert sub.snapshots.received >= 2, "no snapshots arrived"
    other = next(n for n in sw.nodes if n is not victim)
    sw.net.crash(victim.peer_id)  # as kill -9 looks to the others
    out = await asyncio.wait_for(job, 60)
    assert out.ok and out.output == baseline.stdout
    assert out.executor == other.peer_id and out.attempts == 2
    later = await _entries(other)  # the resumed run ships its own snapshots too (task_checkpoint entries)
    assert later[-1].kind == RESULT_KIND
    (resumed,) = [wire.from_bytes(ResumedRecord, e.body or b"") for e in later if e.kind == RESUMED_KIND]
    assert resumed.sender == victim.peer_id and resumed.fuel_used > 0  # work kept, not redone
    shipped = [wire.from_bytes(CheckpointRecord, e.body or b"") for e in await _entries(victim)
               if e.kind == CHECKPOINT_KIND]
    assert resumed.snapshot in {h.snapshot for h in shipped}
    assert all(h.to == sub.transport.peer_id for h in shipped)
    assert (await verify_store(other.store)).ok


async def _order(sub: Submitter, node: Node, order: object, signer: Identity, answer: type[A]) -> A:
    """Send ``order`` sealed by ``signer`` to ``node`` on its operator's protocol; its answer, signed by it."""
    raw = await sub.transport.request(node.peer_id, MOVE_PROTOCOL, wire.seal(signer, order), timeout=60)
    env, done = wire.open_as(answer, raw)
    assert env.author_id == node.peer_id
    return done


def _task_id(node: Node) -> str:
    (key,) = node.executor._runs
    return key[1]


async def test_an_ordered_move_to_an_architecture(swarm_factory: SwarmFactory, migrate_wasm: bytes) -> None:
    sw = await swarm_factory(2)
    job, sub, first = await _start_long_task(sw, migrate_wasm)
    second = next(n for n in sw.nodes if n is not first)
    task_id = _task_id(first)
    now = first.clock.now_ms()
    stranger = await _order(sub, first, MoveOrder(task_id, (), (), now), Identity.generate(), MoveDone)
    assert not stranger.moved and "key" in stranger.detail
    here = arch_capability()
    assert here in first.executor.capabilities()
    done = await _order(sub, first, MoveOrder(task_id, (), (here,), now), first.identity, MoveDone)
    assert done.moved and done.executor == second.peer_id, done
    out = await asyncio.wait_for(job, 60)
    assert out.ok and out.executor == second.peer_id and out.attempts == 1
    assert first.running  # an ordered move leaves the node running


async def test_a_move_nobody_takes_goes_on_where_it_was(swarm_factory: SwarmFactory, migrate_wasm: bytes) -> None:
    sw = await swarm_factory(2)
    baseline = _baseline(sw, migrate_wasm)
    job, sub, first = await _start_long_task(sw, migrate_wasm)
    order = MoveOrder(_task_id(first), (), (arch_capability("riscv64"),), first.clock.now_ms())
    done = await _order(sub, first, order, first.identity, MoveDone)
    assert not done.moved and "no executor" in done.detail
    out = await asyncio.wait_for(job, 60)
    assert out.ok and out.output == baseline.stdout and out.executor == first.peer_id
    kinds = [e.kind for e in await _entries(first)]
    assert kinds[-2:] == [RESUMED_KIND, RESULT_KIND]  # resumed here from its own snapshot


async def test_a_drain_order_moves_running_tasks_then_asks_for_a_stop(
    swarm_factory: SwarmFactory, migrate_wasm: bytes
) -> None:
    sw = await swarm_factory(2)
    baseline = _baseline(sw, migrate_wasm)
    job, sub, first = await _start_long_task(sw, migrate_wasm)
    second = next(n for n in sw.nodes if n is not first)
    task_id = _task_id(first)
    stranger = await _order(sub, first, DrainOrder(first.clock.now_ms()), Identity.generate(), DrainDone)
    assert not stranger.draining and stranger.reason == Reason.FORBIDDEN and first.running
    done = await _order(sub, first, DrainOrder(first.clock.now_ms()), first.identity, DrainDone)
    assert done.draining and done.moving == (task_id,)
    assert not first.running  # it stopped admitting at once
    again = await _order(sub, first, DrainOrder(first.clock.now_ms()), first.identity, DrainDone)
    assert not again.draining and again.reason == Reason.STOPPING
    out = await asyncio.wait_for(job, 60)
    assert out.ok and out.output == baseline.stdout and out.executor == second.peer_id and out.attempts == 1
    runtime = sw.runtimes[sw.nodes.index(first)]
    await asyncio.wait_for(runtime.wait(), 10)  # the node asks whoever runs it to stop it
    report = await runtime.stop()
    assert report.drain.handed_back == 0 and first.executor.counts["migrated"] == 1


def _battery(sysfs: Path, percent: int, status: str) -> None:
    bat = sysfs / "class" / "power_supply" / "BAT0"
    bat.mkdir(parents=True, exist_ok=True)
    (bat / "type").write_text("Battery\n")
    (bat / "status").write_text(status + "\n")
    (bat / "capacity").write_text(f"{percent}\n")


async def test_a_low_battery_drains_the_node(swarm_factory: SwarmFactory, migrate_wasm: bytes, tmp_path: Path) -> None:
    roots = [tmp_path / f"sys{i}" for i in range(2)]
    for root in roots:
        _battery(root, 80, "Discharging")

    def section(i: int) -> NodeSection:
        return NodeSection(drain_when=("battery < 15", "thermal > 95000"), drain_poll_s=0.05, sysfs=str(roots[i]))

    sw = await swarm_factory(2, section=section)
    job, _sub, first = await _start_long_task(sw, migrate_wasm)
    i = sw.nodes.index(first)
    _battery(roots[i], 9, "Discharging")
    runtime = sw.runtimes[i]
    await asyncio.wait_for(runtime.wait(), 10)
    assert not first.running
    out = await asyncio.wait_for(job, 60)
    assert out.ok and out.executor != first.peer_id and first.executor.counts["migrated"] == 1
    assert sw.nodes[1 - i].running  # the other node's battery is fine
    await runtime.stop()
