"""The runtime's stop: every task admitted before it gets an answer, and every receipt's entry is on disk.

One node built by :func:`edgenode.runtime.build_runtime` with a real sandbox and a real SQLite
ledger on memnet; a peer sends signed task specs straight to its task protocol (as a submitter
does) and keeps each answer.  Each test stops the node (or kills its store) with tasks in flight,
then checks: every request was answered within a bound; each answer is a receipt whose entry is
in the reopened database, or an explicit ``Busy``/``Rejected`` with a reason; nothing was left for
the event loop's "never retrieved" handler.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from edgenode import wire
from edgenode.config import NodeConfig, NodeSection
from edgenode.identity import Identity
from edgenode.metrics import NodeMetrics
from edgenode.net import MemoryBlobStore
from edgenode.net.memnet import MemNetwork, MemTransport
from edgenode.node import NodeTiming
from edgenode.protocol import TASK_PROTOCOL, Busy, Receipt, Rejected, TaskLimits, TaskSpec
from edgenode.reasons import BUSY, REJECTED, Reason
from edgenode.runtime import Runtime, build_runtime
from edgenode.sandbox import Limits, RunResult, Sandbox, TaskIO
from edgenode.tasks import SystemClock
from ledger import Entry, SqliteLedgerStore, verify_store

pytestmark = pytest.mark.timeout(120)

SPIN_WAT = '(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))'
"""A task that runs until its deadline (status ``deadline``: still a receipt and a ledger entry)."""

FUEL = 2_000_000_000
"""Enough for the spin task to reach its deadline rather than run out of fuel."""
ANSWER_BOUND_S = 20.0
"""No request may wait longer than this for its answer."""


class Watch:
    """Counts what the node reports (specs seen by the admission hook, runs started in the sandbox,
    tasks done) and wakes a test waiting for a count: no polling."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._waiters: list[tuple[str, int, asyncio.Future[None]]] = []
        self.loop = asyncio.get_running_loop()

    def tick(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1
        for w in [w for w in self._waiters if self.counts[what] >= w[1] and w[0] == what]:
            self._waiters.remove(w)
            if not w[2].done():
                w[2].set_result(None)

    async def until(self, what: str, n: int) -> None:
        if self.counts.get(what, 0) >= n:
            return
        fut: asyncio.Future[None] = self.loop.create_future()
        self._waiters.append((what, n, fut))
        await asyncio.wait_for(fut, ANSWER_BOUND_S)


class WatchedSandbox:
    """The real sandbox, telling ``watch`` when a run starts (from the worker thread)."""

    def __init__(self, inner: Sandbox, watch: Watch) -> None:
        self.inner, self.watch = inner, watch

    def has_module(self, module_hash: str) -> bool:
        return self.inner.has_module(module_hash)

    def compile(self, module: bytes) -> str:
        return self.inner.compile(module)

    def run(self, module_hash: str, io: TaskIO, limits: Limits) -> RunResult:
        self.watch.loop.call_soon_threadsafe(self.watch.tick, "run")
        return self.inner.run(module_hash, io, limits)


class WatchedMetrics(NodeMetrics):
    def __init__(self, watch: Watch) -> None:
        super().__init__()
        self.watch = watch

    def task_done(self, kind: str, status: str, ms: float) -> None:
        super().task_done(kind, status, ms)
        self.watch.tick("done")


@dataclass
class Rig:
    watch: Watch
    runtime: Runtime
    client: MemTransport
    signer: Identity
    modules: dict[str, str]
    db: Path

    def spec(self, task_id: str, module: str = "cat", timeout_ms: int = 5_000) -> TaskSpec:
        t = SystemClock().now_ms()
        return TaskSpec(task_id, "wasm", self.modules[module], task_id.encode(), (),
                        TaskLimits(fuel=FUEL, timeout_ms=timeout_ms), (), (), os.urandom(16), t, t + 60_000)

    async def send(self, spec: TaskSpec) -> Any:
        answer = await self.client.request(self.runtime.peer_id, TASK_PROTOCOL, wire.seal(self.signer, spec),
                                           timeout=ANSWER_BOUND_S)
        return wire.open_envelope(answer).message


@pytest.fixture
async def rig(tmp_path: Path, sandbox: Sandbox, cat_wasm: bytes) -> AsyncIterator[Any]:
    made: list[Rig] = []

    async def make(*, slots: int = 2, queue: int = 64, drain_s: float = 5.0) -> Rig:
        net = MemNetwork(seed=len(made))
        ident = Identity.generate()
        db = tmp_path / f"n{len(made)}.db"
        store = await SqliteLedgerStore.open(db, synchronous="NORMAL")
        watch = Watch()

        def seen(_env: wire.Envelope) -> None:
            watch.tick("spec")  # admission follows in the same step

        rt = build_runtime(ident, NodeConfig(node=NodeSection(slots=slots, queue=queue)), net.add_node(ident), store,
                           sandbox=WatchedSandbox(sandbox, watch), metrics=WatchedMetrics(watch), hook=seen,
                           timing=NodeTiming(advert_s=0.2, head_s=0.2, drain_s=drain_s), fl=False)
        await rt.start()
        cid = Identity.generate()
        client = net.add_node(cid)
        await client.start()
        blobs = MemoryBlobStore()
        modules = {"cat": blobs.put(cat_wasm), "spin": blobs.put(bytes(wasmtime.wat2wasm(SPIN_WAT)))}
        client.serve_blobs(blobs)
        await client.connect(rt.transport.listen_addrs[0])
        r = Rig(watch, rt, client, cid, modules, db)
        made.append(r)
        return r

    yield make
    for r in made:
        await r.client.stop()
        await r.runtime.stop()


def _catch_loop_errors() -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: seen.append(ctx))
    return seen


async def _on_disk(db: Path, author: bytes) -> dict[int, Entry]:
    async with await SqliteLedgerStore.open(db, readonly=True) as store:
        assert (await verify_store(store)).ok
        head = await store.head(author)
        entries = await store.range(author, 1, head.seq) if head is not None else []
        return {e.seq: e for e in entries}


async def _account(rig: Rig, answers: list[Any]) -> tuple[int, int]:
    """Check every answer against the reopened ledger; (receipts, refusals)."""
    stored = await _on_disk(rig.db, rig.runtime.identity.public_key)
    receipts = refusals = 0
    for ans in answers:
        if isinstance(ans, Receipt):
            entry = Entry.from_bytes(ans.entry)
            assert stored.get(entry.seq) == entry, f"receipt for {ans.task_id} but its entry is not on disk"
            receipts += 1
        else:
            assert isinstance(ans, Busy | Rejected), ans
            assert ans.reason in (BUSY if isinstance(ans, Busy) else REJECTED)
            refusals += 1
    assert receipts + refusals == len(answers)
    assert receipts == len(stored)  # every task_result on disk was answered with its receipt
    return receipts, refusals


async def test_stop_with_50_tasks_in_flight_answers_all(rig: Any) -> None:
    errors = _catch_loop_errors()
    r: Rig = await rig(slots=2, queue=64, drain_s=5.0)
    sends = [asyncio.create_task(r.send(r.spec(f"t{i:02d}", "spin", timeout_ms=300))) for i in range(50)]
    await r.watch.until("spec", 50)
    await r.watch.until("run", 2)
    assert r.runtime.node.admission.queue_len + r.runtime.node.admission.running == 50
    report = await asyncio.wait_for(r.runtime.stop(), ANSWER_BOUND_S)
    answers = await asyncio.wait_for(asyncio.gather(*sends), ANSWER_BOUND_S)
    receipts, refusals = await _account(r, answers)
    # the two running tasks finished within the budget (their deadline is 300 ms); the queue was refused
    assert receipts == report.drain.finished == 2
    assert refusals == report.drain.unqueued == 48
    assert all(a.reason == Reason.STOPPING for a in answers if isinstance(a, Busy))
    assert r.runtime.node.admission.queue_len == r.runtime.node.admission.running == 0
    gc.collect()
    await asyncio.sleep(0)
    assert errors == []


async def test_stop_past_the_drain_budget_hands_running_tasks_back(rig: Any) -> None:
    errors = _catch_loop_errors()
    r: Rig = await rig(slots=2, queue=8, drain_s=0.05)
    sends = [asyncio.create_task(r.send(r.spec(f"s{i}", "spin", timeout_ms=2_000))) for i in range(6)]
    await r.watch.until("spec", 6)
    await r.watch.until("run", 2)
    report = await asyncio.wait_for(r.runtime.stop(), ANSWER_BOUND_S)
    answers = await asyncio.wait_for(asyncio.gather(*sends), ANSWER_BOUND_S)
    assert await _account(r, answers) == (0, 6)
    assert (report.drain.handed_back, report.drain.unqueued) == (2, 4)
    assert report.elapsed_ms < 1_000
    gc.collect()
    await asyncio.sleep(0)
    assert errors == []


async def test_store_killed_mid_append_then_stop(rig: Any) -> None:
    """The store closes under the node while results are being written: nothing hangs; each task
    has a receipt whose entry is on disk or an explicit refusal; the node still stops cleanly."""
    errors = _catch_loop_errors()
    r: Rig = await rig(slots=4, queue=64)
    sends = [asyncio.create_task(r.send(r.spec(f"c{i:02d}"))) for i in range(50)]
    await r.watch.until("done", 5)
    await r.runtime.store.close()  # waits for the write in flight (the store lock), refuses the rest
    answers = await asyncio.wait_for(asyncio.gather(*sends), ANSWER_BOUND_S)
    await asyncio.wait_for(r.runtime.stop(), ANSWER_BOUND_S)
    receipts, refusals = await _account(r, answers)
    assert receipts >= 5 and refusals >= 1
    assert any(isinstance(a, Busy) and a.reason == Reason.LEDGER_FAILED for a in answers)
    gc.collect()
    await asyncio.sleep(0)
    assert errors == []


async def test_runtime_stop_is_idempotent_and_start_once(rig: Any) -> None:
    r: Rig = await rig()
    first = await r.runtime.stop()
    assert await r.runtime.stop() is first
    assert r.runtime.failure is None
    assert r.runtime.node.background_tasks == 0
