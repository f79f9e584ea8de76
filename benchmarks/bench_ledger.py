"""Ledger figures: signed durable appends per second into SQLite, entries verified per second per core.

    python benchmarks/bench_ledger.py [--quick]

Figures:
- ledger.append_per_s: signed entries appended through ``Ledger.append_batch`` into a
  ``SqliteLedgerStore`` (WAL, synchronous=FULL: durable when the call returns), batched commits.
- ledger.append_unbatched_per_s: the same, one entry (one fsynced transaction) per call.
- ledger.verify_per_s: entries checked by ``verify_chain`` (signature, body hash, link, time), one core.
- ledger.verify_store_per_s: ``verify_store`` over the SQLite file (reads + checks), one core.
Each is the median over several runs (``runs`` in params). Appends are timed by the wall clock
(durability waits on fsync); verification by CPU time, i.e. per core, so that other processes on
the machine do not distort it (the wall-clock rate is in params). ``loadavg_1m`` records how
busy the machine was.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, median

from edgenode.identity import Identity
from ledger import Entry, Ledger, SqliteLedgerStore, verify_chain, verify_store

BODY = bytes(range(256)) * 1  # a 256-byte body, about a task-result summary


async def _append_run(path: Path, total: int, batch: int) -> tuple[float, float, list[Entry]]:
    """(wall-clock rate, CPU-time rate, entries)."""
    store = await SqliteLedgerStore.open(path)
    led = Ledger(store, Identity.generate())
    made: list[Entry] = []
    t0, c0 = time.perf_counter(), time.process_time()
    ts = 1_700_000_000_000
    for start in range(0, total, batch):
        n = min(batch, total - start)
        made += await led.append_batch([("task_result", BODY, ts + start + i) for i in range(n)])
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    await store.close()
    return total / elapsed, total / cpu, made


async def _verify_store_run(path: Path) -> float:
    """Entries per CPU-second (one thread does the checking; SQLite reads run in aiosqlite's thread)."""
    store = await SqliteLedgerStore.open(path, readonly=True)
    c0 = time.process_time()
    report = await verify_store(store)
    cpu = time.process_time() - c0
    await store.close()
    assert report.ok
    return report.entries / cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one run each (smoke test)")
    args = ap.parse_args()
    runs = 1 if args.quick else 5
    total = 2_000 if args.quick else 50_000
    batch = 1_000
    single = 50 if args.quick else 300

    append_rates, append_cpu, single_rates, verify_rates, verify_wall, store_rates = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(runs):
            path = Path(tmp) / f"bench{r}.db"
            rate, cpu_rate, entries = asyncio.run(_append_run(path, total, batch))
            append_rates.append(rate)
            append_cpu.append(cpu_rate)
            t0, c0 = time.perf_counter(), time.thread_time()
            verify_chain(entries)
            verify_rates.append(len(entries) / (time.thread_time() - c0))
            verify_wall.append(len(entries) / (time.perf_counter() - t0))
            store_rates.append(asyncio.run(_verify_store_run(path)))
            srate, _, _ = asyncio.run(_append_run(Path(tmp) / f"single{r}.db", single, 1))
            single_rates.append(srate)
    load = os.getloadavg()[0]
    common = {"runs": runs, "body_bytes": len(BODY), "synchronous": "FULL", "journal": "WAL", "loadavg_1m": load}
    emit(
        "ledger.append_per_s",
        round(median(append_rates)),
        "entries/s",
        entries=total,
        batch=batch,
        clock="wall",
        all_runs=[round(x) for x in append_rates],
        cpu_time_per_s=round(median(append_cpu)),
        **common,
    )
    emit(
        "ledger.append_unbatched_per_s",
        round(median(single_rates)),
        "entries/s",
        entries=single,
        batch=1,
        clock="wall",
        all_runs=[round(x) for x in single_rates],
        **common,
    )
    emit(
        "ledger.verify_per_s",
        round(median(verify_rates)),
        "entries/s",
        entries=total,
        cores=1,
        clock="thread_cpu",
        all_runs=[round(x) for x in verify_rates],
        wall_per_s=round(median(verify_wall)),
        runs=runs,
        loadavg_1m=load,
    )
    emit(
        "ledger.verify_store_per_s",
        round(median(store_rates)),
        "entries/s",
        entries=total,
        clock="process_cpu",
        all_runs=[round(x) for x in store_rates],
        runs=runs,
        loadavg_1m=load,
    )


if __name__ == "__main__":
    main()
