"""Inference figures: digits latency and throughput, and the cost of the sandbox's host ``infer`` call.

    python benchmarks/bench_inference.py [--quick]

Figures: inference.digits_p99_us (batch 1), inference.digits_batch64_per_s,
inference.host_call_overhead_p50_us (host call from WASM vs a direct onnxruntime call; p99 in params).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import wasmtime
from _common import emit as _emit
from _common import median, percentile

from edgenode.inference import ModelRegistry
from edgenode.inference.digits import digits_dataset, train_digits_model
from edgenode.sandbox import Limits, Sandbox, SandboxConfig, Status, TaskIO

CALLS = 200


def emit(name: str, value: float, unit: str, **params: object) -> None:
    """emit() with the 1-minute load average: the machine is shared, tails depend on it."""
    _emit(name, value, unit, **params, loadavg_1m=round(os.getloadavg()[0], 2))


def _loop_task(calls: int) -> bytes:
    """A task that calls infer ``calls`` times on the 64 floats at offset 0 (batch 1)."""
    return wasmtime.wat2wasm(f"""
    (module
      (import "edgenode" "infer" (func $infer (param i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start") (local $i i32)
        (loop $l
          (if (i32.ne (call $infer (i32.const 0) (i32.const 0) (i32.const 256) (i32.const 1024) (i32.const 40))
                      (i32.const 40))
            (then unreachable))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (i32.const {calls}))))))
    """)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a fast smoke run")
    args = ap.parse_args()
    n = 300 if args.quick else 5000
    reps = 20 if args.quick else 200
    x, _ = digits_dataset()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "digits.onnx"
        train_digits_model(path)
        reg = ModelRegistry(Path(tmp) / "models")
        h = reg.add(path)
        feed = {"x": x[:1]}
        for _ in range(200):
            reg.run(h, feed)
        gc.disable()
        samples = []
        for i in range(n):
            row = {"x": x[i % len(x)][None]}
            t0 = time.perf_counter_ns()
            reg.run(h, row)
            samples.append((time.perf_counter_ns() - t0) / 1000)
        emit(
            "inference.digits_p99_us",
            round(percentile(samples, 99), 1),
            "us",
            p50_us=round(median(samples), 1),
            samples=n,
            batch=1,
            providers=list(reg.providers),
            threads=1,
            model="MLP 64-32-10",
        )
        batch = {"x": x[:64]}
        for _ in range(50):
            reg.run(h, batch)
        iters = 300 if args.quick else 3000
        t0 = time.perf_counter()
        for _ in range(iters):
            reg.run(h, batch)
        emit(
            "inference.digits_batch64_per_s",
            round(iters * 64 / (time.perf_counter() - t0)),
            "samples/s",
            batch=64,
            iterations=iters,
            threads=1,
        )

        # Direct onnxruntime (the registry's own session, no checks) vs the host call from WASM.
        session = reg._session(h).session
        x1 = x[:1]
        direct = []
        for _ in range(reps):
            t0 = time.perf_counter_ns()
            for _ in range(CALLS):
                session.run(None, {"x": x1})
            direct.append((time.perf_counter_ns() - t0) / 1000 / CALLS)
        with Sandbox(SandboxConfig(), models=reg) as sb:
            task = sb.compile(_loop_task(CALLS))
            io = TaskIO(models=(h,))
            limits = Limits(fuel=10**9, timeout_ms=60_000)
            host = []
            for _ in range(reps):
                p = sb.prepare(task, io, limits)
                t0 = time.perf_counter_ns()
                r = p.start()
                host.append((time.perf_counter_ns() - t0) / 1000 / CALLS)
                assert r.status is Status.OK, r
        gc.enable()
        emit(
            "inference.host_call_overhead_p50_us",
            round(median(host) - median(direct), 1),
            "us",
            p99_us=round(percentile(host, 99) - percentile(direct, 99), 1),
            host_p50_us=round(median(host), 1),
            direct_p50_us=round(median(direct), 1),
            calls_per_sample=CALLS,
            samples=reps,
            what="per infer call: WASM->host->ORT minus bare session.run",
        )


if __name__ == "__main__":
    main()
