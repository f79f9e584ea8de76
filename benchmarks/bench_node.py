"""Node runtime figures (issue 14): how long an ordered stop takes with work in flight, and what an
idle ``edgenode run`` process holds in memory.

    python benchmarks/bench_node.py [--quick]

Figures:

* ``node.shutdown_ms``: :meth:`edgenode.runtime.Runtime.stop` with 50 tasks in flight (a node built
  by ``build_runtime``: real sandbox, real SQLite ledger, 2 slots, on memnet; each task spins until
  its 200 ms deadline).  Params count what every task got: a receipt (its entry durable) or an
  explicit refusal (``Busy``); ``accounted`` must equal ``tasks``.
* ``node.idle_rss_mb``: VmRSS of an ``edgenode run`` process (libp2p on 127.0.0.1, open mode,
  FL controller idle) ``settle_s`` after it printed its listen address (goal <= 150 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import wasmtime
from _common import emit as _emit
from _common import median, start_node, stop_nodes

from edgenode import wire
from edgenode.config import NodeConfig, NodeSection
from edgenode.identity import Identity
from edgenode.net import MemoryBlobStore
from edgenode.net.memnet import MemNetwork
from edgenode.node import NodeTiming
from edgenode.protocol import TASK_PROTOCOL, Busy, Receipt, Rejected, TaskLimits, TaskSpec
from edgenode.runtime import build_runtime
from edgenode.sandbox import Limits, RunResult, Sandbox, TaskIO
from edgenode.tasks import SystemClock
from ledger import Entry, SqliteLedgerStore

SPIN_WAT = '(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))'
TASKS = 50
TASK_MS = 200
RSS_GOAL_MB = 150


def emit(name: str, value: float, unit: str, **params: object) -> None:
    """emit() with the 1-minute load average: the machine is shared, times depend on it."""
    _emit(name, value, unit, **params, loadavg_1m=round(os.getloadavg()[0], 2))


class _Counted:
    """The real sandbox, counting runs started; ``ready`` is set once ``specs`` specs were seen by
    the admission hook and ``runs`` runs started (no polling)."""

    def __init__(self, inner: Sandbox, specs: int, runs: int) -> None:
        self.inner = inner
        self.loop = asyncio.get_running_loop()
        self.want = (specs, runs)
        self.seen = [0, 0]
        self.ready = asyncio.Event()

    def _tick(self, i: int) -> None:
        self.seen[i] += 1
        if self.seen[0] >= self.want[0] and self.seen[1] >= self.want[1]:
            self.ready.set()

    def hook(self, _env: wire.Envelope) -> None:
        self._tick(0)  # admission follows in the same step

    def has_module(self, module_hash: str) -> bool:
        return self.inner.has_module(module_hash)

    def compile(self, module: bytes) -> str:
        return self.inner.compile(module)

    def run(self, module_hash: str, io: TaskIO, limits: Limits) -> RunResult:
        self.loop.call_soon_threadsafe(self._tick, 1)
        return self.inner.run(module_hash, io, limits)


async def _one_stop(home: Path, inner: Sandbox, spin: bytes, rep: int) -> dict[str, float]:
    sandbox = _Counted(inner, TASKS, 2)
    net = MemNetwork(seed=rep)
    ident = Identity.generate()
    db = home / f"shutdown{rep}.db"
    store = await SqliteLedgerStore.open(db)
    rt = build_runtime(ident, NodeConfig(node=NodeSection(slots=2, queue=64)), net.add_node(ident), store,
                       sandbox=sandbox, hook=sandbox.hook, timing=NodeTiming(drain_s=10.0), fl=False)
    await rt.start()
    client_id = Identity.generate()
    client = net.add_node(client_id)
    await client.start()
    blobs = MemoryBlobStore()
    module = blobs.put(spin)
    client.serve_blobs(blobs)
    await client.connect(rt.transport.listen_addrs[0])

    async def send(i: int) -> object:
        t = SystemClock().now_ms()
        spec = TaskSpec(f"t{i}", "wasm", module, b"", (), TaskLimits(fuel=2_000_000_000, timeout_ms=TASK_MS),
                        (), (), os.urandom(16), t, t + 60_000)
        answer = await client.request(rt.peer_id, TASK_PROTOCOL, wire.seal(client_id, spec), timeout=60.0)
        return wire.open_envelope(answer).message

    sends = [asyncio.create_task(send(i)) for i in range(TASKS)]
    await asyncio.wait_for(sandbox.ready.wait(), 30.0)  # all admitted, both slots running
    t0 = time.perf_counter()
    report = await rt.stop()
    took = (time.perf_counter() - t0) * 1000.0
    answers = await asyncio.wait_for(asyncio.gather(*sends), 30.0)
    await client.stop()
    async with await SqliteLedgerStore.open(db, readonly=True) as check:
        head = await check.head(ident.public_key)
        stored = {e.seq: e for e in (await check.range(ident.public_key, 1, head.seq) if head else [])}
    receipts = sum(1 for a in answers if isinstance(a, Receipt) and stored.get(Entry.from_bytes(a.entry).seq)
                   == Entry.from_bytes(a.entry))
    refusals = sum(1 for a in answers if isinstance(a, Busy | Rejected) and a.reason)
    return {"ms": took, "receipts": receipts, "refusals": refusals, "unqueued": report.drain.unqueued,
            "handed_back": report.drain.handed_back, "finished": report.drain.finished}


async def shutdown_figure(home: Path, reps: int) -> None:
    spin = bytes(wasmtime.wat2wasm(SPIN_WAT))
    with Sandbox() as sandbox:
        runs = [await _one_stop(home, sandbox, spin, rep) for rep in range(reps)]
    last = runs[-1]
    emit("node.shutdown_ms", round(median([r["ms"] for r in runs]), 1), "ms", tasks=TASKS, slots=2,
         task_ms=TASK_MS, drain_s=10.0, receipts=int(last["receipts"]), refusals=int(last["refusals"]),
         unqueued=int(last["unqueued"]), handed_back=int(last["handed_back"]),
         accounted=int(last["receipts"] + last["refusals"]),
         all_accounted=all(r["receipts"] + r["refusals"] == TASKS for r in runs),
         max_ms=round(max(r["ms"] for r in runs), 1), reps=reps, transport="memnet", ledger="sqlite")


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    vals = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            vals[key] = int(rest.split()[0]) / 1024.0
    return vals["VmRSS"], vals["VmHWM"]


def rss_figure(home: Path, settle_s: float, reps: int) -> None:
    samples, peaks = [], []
    for rep in range(reps):
        proc, _addr = start_node(home / f"rss{rep}", [])
        try:
            time.sleep(settle_s)
            rss, hwm = _rss_mb(proc.pid)
            samples.append(rss)
            peaks.append(hwm)
        finally:
            stop_nodes([proc])
    emit("node.idle_rss_mb", round(median(samples), 1), "MB", settle_s=settle_s, peak_mb=round(max(peaks), 1),
         goal_mb=RSS_GOAL_MB, reps=reps, transport="libp2p tcp", mode="open", fl="idle controller")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="one repetition of each figure")
    args = ap.parse_args()
    logging.getLogger("edgenode").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-node-") as tmp:
        asyncio.run(shutdown_figure(Path(tmp), 1 if args.quick else 5))
        rss_figure(Path(tmp), 5.0, 1 if args.quick else 3)


if __name__ == "__main__":
    main()
