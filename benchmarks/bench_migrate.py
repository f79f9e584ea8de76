"""Migration figures: snapshot size, pause (checkpoint + libp2p transfer + resume), Asyncify overhead,
work saved by periodic checkpoints when executors are killed.

The task is ``examples/tasks/migrate.c`` with 16 MiB of touched (pseudo-random, so
incompressible) memory. Node A runs it and, after a moment, is asked for a checkpoint that
stops it; node B fetches the snapshot by its sha256 from A over real py-libp2p on loopback
(two transports in this process), verifies it, resumes and runs to the end. The output must
equal an uninterrupted run's.

    python benchmarks/bench_migrate.py [--quick] [--repeats N] [--only overhead|pause|kills]

Figures:

* ``migrate.snapshot_bytes``: size of the snapshot (full, 16 MiB touched);
* ``migrate.pause_ms_p50`` / ``migrate.pause_ms_p99``: from the checkpoint request to the
  resumed task ready to continue on B (the parts' medians in params);
* ``migrate.asyncify_overhead_ratio``: run time of the task with safe points, rewritten and
  run without checkpoints, over the same task built without them (``-DEDGE_NO_SAFEPOINTS``);
* ``migrate.work_saved_ratio``: ``examples/scenarios/migrate_kills.toml`` on simnet (memnet, in a
  child process): migrate.c tasks with ``checkpoint_ms`` while executors are killed; fuel carried
  over from snapshots / fuel a restart from zero would redo (docs/simnet.md).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit as _emit
from _common import median, percentile, run_child

from edgenode.identity import Identity
from edgenode.net import MemoryBlobStore
from edgenode.net.p2p import P2PTransport
from edgenode.sandbox import (
    Checkpointing,
    Limits,
    RunResult,
    Sandbox,
    SandboxConfig,
    Snapshot,
    Status,
    TaskIO,
    have_wasm_opt,
)

REPO = Path(__file__).resolve().parents[1]
KILLS_SCENARIO = REPO / "examples" / "scenarios" / "migrate_kills.toml"
LIMITS = Limits(fuel=200_000_000_000, timeout_ms=30_000, memory_mb=64, max_output_bytes=1 << 20)


def emit(name: str, value: float | None, unit: str, **params: object) -> None:
    _emit(name, value, unit, **params, loadavg_1m=round(os.getloadavg()[0], 2))


def _build(out: Path) -> tuple[bytes, bytes]:
    spec = importlib.util.spec_from_file_location("tasks_build", REPO / "examples/tasks/build.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not mod.have_clang():
        raise SystemExit("bench_migrate: clang for wasm32-wasi is missing (scripts/setup.sh installs it)")
    src, inc = REPO / "examples/tasks/migrate.c", REPO / "examples/tasks/include"
    built = {}
    for name, extra in (("safe", []), ("plain", ["-DEDGE_NO_SAFEPOINTS"])):
        path = out / f"migrate_{name}.wasm"
        subprocess.run(["clang", *mod.CLANG_FLAGS, *extra, f"-I{inc}", "-o", str(path), str(src)], check=True)
        built[name] = path.read_bytes()
    return built["safe"], built["plain"]


def _stdin(rounds: int, mib: int, depth: int) -> bytes:
    return f"{rounds} {mib} {depth} ".encode() + b" ".join(str(i * 7919 % 1000003).encode() for i in range(4096))


def overhead(sb: Sandbox, safe: str, plain: str, repeats: int) -> None:
    io = TaskIO(stdin=_stdin(60, 4, 14))
    times: dict[str, list[float]] = {"safe": [], "plain": []}
    outs: dict[str, bytes] = {}
    for _ in range(repeats):
        for name, h in (("safe", safe), ("plain", plain)):
            t0 = time.perf_counter()
            r = sb.run(h, io, LIMITS)
            times[name].append(time.perf_counter() - t0)
            assert r.status is Status.OK, r.status
            outs[name] = r.stdout
    assert outs["safe"] == outs["plain"]
    ratio = median(times["safe"]) / median(times["plain"])
    emit("migrate.asyncify_overhead_ratio", round(ratio, 3), "ratio",
         safe_ms=round(median(times["safe"]) * 1000, 1), plain_ms=round(median(times["plain"]) * 1000, 1),
         runs=repeats, task="migrate.c 60 rounds, 4 MiB, depth 14 (983,040 safe points)")


def _stamp(into: list[float]) -> Callable[[Snapshot], None]:
    def stamp(_snap: Snapshot) -> None:
        into.append(time.perf_counter())

    return stamp


async def pauses(a: Sandbox, b: Sandbox, h: str, repeats: int, after_s: float) -> None:
    io = TaskIO(stdin=_stdin(4000, 16, 12))
    baseline = await asyncio.to_thread(a.run, h, io, LIMITS)
    assert baseline.status is Status.OK, baseline.status
    ida, idb = Identity.generate(), Identity.generate()
    ta = P2PTransport(ida, listen=["/ip4/127.0.0.1/tcp/0"])
    tb = P2PTransport(idb, listen=["/ip4/127.0.0.1/tcp/0"])
    store = MemoryBlobStore()
    ta.serve_blobs(store)
    await ta.start()
    await tb.start()
    parts: dict[str, list[float]] = {"checkpoint": [], "transfer": [], "resume": []}
    total: list[float] = []
    sizes: list[int] = []
    try:
        await tb.connect(ta.listen_addrs[0])
        for _ in range(repeats):
            taken: list[float] = []
            policy = Checkpointing(ida, on_snapshot=_stamp(taken))
            run = a.prepare(h, io, LIMITS, checkpointing=policy)
            done: list[RunResult] = []
            worker = threading.Thread(target=lambda run=run, done=done: done.append(run.start()))
            worker.start()
            await asyncio.sleep(after_s)  # let it fill its 16 MiB and recurse a while
            t0 = time.perf_counter()
            run.request_checkpoint(stop=True)
            await asyncio.to_thread(worker.join, 60)
            first = done[0]
            assert first.status is Status.CHECKPOINTED, f"{first.status} (the task ended first)"
            assert first.snapshot is not None
            snap: Snapshot = first.snapshot
            t1 = taken[-1]
            digest = store.put(snap.data)
            data = await tb.fetch_blob(ta.peer_id, digest, timeout=60)
            t2 = time.perf_counter()
            opened = b.open_snapshot(data, trusted={ida.public_key})
            resumed = b.prepare(h, io, resume=[opened])
            t3 = time.perf_counter()
            final = await asyncio.to_thread(resumed.start)
            assert final.status is Status.OK and final.stdout == baseline.stdout, final.status
            parts["checkpoint"].append((t1 - t0) * 1000)
            parts["transfer"].append((t2 - t1) * 1000)
            parts["resume"].append((t3 - t2) * 1000)
            total.append((t3 - t0) * 1000)
            sizes.append(snap.size)
    finally:
        await ta.stop()
        await tb.stop()
    params = {
        "touched_mib": 16,
        "transport": "py-libp2p, loopback, both nodes in one process (blob fetch by sha256)",
        "repeats": repeats,
        **{f"{k}_p50_ms": round(median(v), 1) for k, v in parts.items()},
    }
    emit("migrate.snapshot_bytes", int(median(sizes)), "bytes", touched_mib=16,
         memory_mib=round(opened.state.memory_pages / 16, 1), pages_present=len(opened.state.pages))
    emit("migrate.pause_ms_p50", round(percentile(total, 50), 1), "ms", **params)
    emit("migrate.pause_ms_p99", round(percentile(total, 99), 1), "ms", **params)


def _kills_child(table: str) -> None:
    """Run the kill scenario in this process and print what the parent emits (the child of :func:`kills`)."""
    from simnet import parse_scenario, run_scenario
    from simnet._swarm import make_backend

    sc = parse_scenario(json.loads(table))
    t0 = time.perf_counter()
    res = asyncio.run(run_scenario(sc, make_backend(sc)))
    rec = res.recorder
    figures = {f.name: f.value for f in res.figures if f.name.startswith(("migrate.", "simnet.tasks_"))}
    out = {"wall_s": time.perf_counter() - t0, "invariants": res.invariants_hold, "lost": len(rec.lost()),
           "duplicated": len(rec.duplicated()), "figures": figures}
    sys.stdout.write("MIGRATE-KILLS " + json.dumps(out) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip the interpreter teardown (see simnet.cli.main)


def kills(quick: bool) -> None:
    table = tomllib.loads(KILLS_SCENARIO.read_text())
    if quick:
        table["swarm"]["duration_s"] = 18.0  # three of the five kills
    res = run_child(__file__, json.dumps(table), "MIGRATE-KILLS", timeout=900)
    fig = res["figures"]
    mix = table["workload"]["mix"][0]
    ratio = fig["migrate.work_saved_ratio"]  # NaN (no kill hit a running task): null
    emit("migrate.work_saved_ratio", None if math.isnan(ratio) else round(ratio, 3), "ratio",
         scenario=KILLS_SCENARIO.name, nodes=table["swarm"]["nodes"], duration_s=table["swarm"]["duration_s"],
         rounds=mix["rounds"], checkpoint_ms=mix["checkpoint_ms"], runs_killed=int(fig["migrate.runs_killed"]),
         tasks_resumed=int(fig["migrate.tasks_resumed"]), fuel_at_kill=int(fig["migrate.fuel_at_kill"]),
         fuel_carried=int(fig["migrate.fuel_carried"]), outputs_checked=int(fig["migrate.outputs_checked"]),
         outputs_mismatched=int(fig["migrate.outputs_mismatched"]), tasks_ok=int(fig["simnet.tasks_ok"]),
         tasks_submitted=int(fig["simnet.tasks_submitted"]), lost=res["lost"], duplicated=res["duplicated"],
         invariants_hold=res["invariants"], wall_s=round(res["wall_s"], 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, a shorter kill scenario")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--only", choices=("overhead", "pause", "kills"), default=None, help="one figure group")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        _kills_child(args.child)
    if not have_wasm_opt():
        raise SystemExit("bench_migrate: binaryen's wasm-opt is missing (scripts/setup.sh installs it)")
    repeats = args.repeats or (3 if args.quick else 20)
    if args.only in (None, "overhead", "pause"):
        with tempfile.TemporaryDirectory(prefix="bench-migrate-") as tmp:
            safe_bytes, plain_bytes = _build(Path(tmp))
            with Sandbox(SandboxConfig(cache_dir=Path(tmp) / "a", max_fuel=LIMITS.fuel)) as a, \
                    Sandbox(SandboxConfig(cache_dir=Path(tmp) / "b", max_fuel=LIMITS.fuel)) as b:
                safe, plain = a.compile(safe_bytes), a.compile(plain_bytes)
                b.compile(safe_bytes)
                if args.only in (None, "overhead"):
                    overhead(a, safe, plain, max(3, repeats // 2))
                if args.only in (None, "pause"):
                    asyncio.run(pauses(a, b, safe, repeats, after_s=0.3))
    if args.only in (None, "kills"):
        kills(args.quick)


if __name__ == "__main__":
    main()
