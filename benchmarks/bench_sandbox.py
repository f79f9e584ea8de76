"""Sandbox figures: warm and cold start, live instances held at once, RSS per instance.

Start figures are wall-clock; params also give this thread's CPU time (cpu_*), which a busy
shared machine does not inflate.

    python benchmarks/bench_sandbox.py [--quick] [--instances N]

Figures: sandbox.warm_start_p99_us, sandbox.cold_start_p99_us, sandbox.live_instances,
sandbox.rss_per_instance_kb.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit as _emit
from _common import median, percentile

from edgenode.sandbox import Limits, PreparedRun, Sandbox, SandboxConfig, Status, TaskIO

REPO = Path(__file__).resolve().parents[1]
LIMITS = Limits(fuel=10_000_000, timeout_ms=10_000, memory_mb=1, max_output_bytes=4096)


def emit(name: str, value: float, unit: str, **params: object) -> None:
    """emit() with the 1-minute load average: the machine is shared, tails depend on it."""
    _emit(name, value, unit, **params, loadavg_1m=round(os.getloadavg()[0], 2))


def _build(out: Path) -> dict[str, Path]:
    spec = importlib.util.spec_from_file_location("tasks_build", REPO / "examples/tasks/build.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    built: dict[str, Path] = mod.build_all(out, c=mod.have_clang())
    return built


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def warm(sb: Sandbox, h: str, n: int, name: str) -> None:
    io = TaskIO()
    for _ in range(min(200, n)):
        sb.run(h, io, LIMITS)
    samples, cpu = [], []
    for _ in range(n):
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        r = sb.run(h, io, LIMITS)
        samples.append((time.perf_counter_ns() - t0) / 1000)
        cpu.append((time.thread_time_ns() - c0) / 1000)
        assert r.status is Status.OK
    emit(
        "sandbox.warm_start_p99_us",
        round(percentile(samples, 99), 1),
        "us",
        p50_us=round(median(samples), 1),
        cpu_p50_us=round(median(cpu), 1),
        cpu_p99_us=round(percentile(cpu, 99), 1),
        samples=n,
        module=name,
        what="Store+WASI+instantiate+_start, cached module",
    )


def cold(cache: Path, modules: dict[str, bytes], n: int) -> None:
    """Module precompiled on disk but not in memory: deserialize + instantiate + run."""
    sb = Sandbox(SandboxConfig(cache_dir=cache))
    hashes = {name: sb.compile(data) for name, data in modules.items()}
    for name, h in hashes.items():
        samples, cpu = [], []
        for _ in range(n):
            sb.forget(h)
            t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            r = sb.run(h, TaskIO(stdin=b"a b c\n"), LIMITS)
            samples.append((time.perf_counter_ns() - t0) / 1000)
            cpu.append((time.thread_time_ns() - c0) / 1000)
            assert r.status is Status.OK, r
        emit(
            "sandbox.cold_start_p99_us",
            round(percentile(samples, 99), 1),
            "us",
            p50_us=round(median(samples), 1),
            cpu_p50_us=round(median(cpu), 1),
            cpu_p99_us=round(percentile(cpu, 99), 1),
            samples=n,
            module=name,
            module_bytes=len(modules[name]),
            what="deserialize from disk cache + run",
        )
    sb.close()


def _raise_map_count(want: int) -> str:
    path = Path("/proc/sys/vm/max_map_count")
    try:
        have = int(path.read_text())
    except OSError:
        return "unknown"
    if have >= want:
        return f"{have}"
    try:
        subprocess.run(["sysctl", "-q", "-w", f"vm.max_map_count={want}"], check=True, capture_output=True)
        return f"raised {have}->{int(path.read_text())}"
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"{have} (could not raise: {exc})"


def live(sb: Sandbox, h: str, target: int, budget_s: float) -> None:
    maps = _raise_map_count(max(262_144, target * 3))
    gc.collect()
    base = _rss_kb()
    held: list[PreparedRun] = []
    stopped = "target reached"
    t0 = time.perf_counter()
    try:
        for i in range(target):
            p = sb.prepare(h, TaskIO(), LIMITS)
            if p.failed is not None:
                stopped = f"instantiate failed at {i}: {p.failed}"
                break
            held.append(p)
            if i % 1000 == 0 and time.perf_counter() - t0 > budget_s:
                stopped = f"time budget {budget_s}s"
                break
    except MemoryError:
        stopped = "MemoryError"
    elapsed = time.perf_counter() - t0
    rss = _rss_kb() - base
    n = len(held)
    # The held instances are live: run a few of them.
    ok = sum(held[i].start().status is Status.OK for i in {0, n // 2, n - 1} if 0 <= i < n)
    emit(
        "sandbox.live_instances",
        n,
        "instances",
        target=target,
        stopped=stopped,
        seconds=round(elapsed, 1),
        max_map_count=maps,
        sampled_runs_ok=ok,
        what="Store+WASI+instance of hello.wat held at once",
    )
    emit(
        "sandbox.rss_per_instance_kb", round(rss / max(n, 1), 2), "KiB", rss_delta_mb=round(rss / 1024, 1), instances=n
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a fast smoke run")
    ap.add_argument("--instances", type=int, default=0, help="live instances to try (default 100000; quick 5000)")
    args = ap.parse_args()
    n = 300 if args.quick else 3000
    with tempfile.TemporaryDirectory() as tmp:
        built = _build(Path(tmp) / "tasks")
        modules = {name: built[name].read_bytes() for name in ("hello", "wordcount", "sha256") if name in built}
        with Sandbox(SandboxConfig()) as sb:
            hello = sb.compile(modules["hello"])
            warm(sb, hello, n, "hello.wat")
            if "wordcount" in modules:
                warm(sb, sb.compile(modules["wordcount"]), n, "wordcount.c")
        cold(Path(tmp) / "cache", modules, n)
        with Sandbox(SandboxConfig()) as sb:
            hello = sb.compile(modules["hello"])
            target = args.instances or (5_000 if args.quick else 100_000)
            live(sb, hello, target, budget_s=60 if args.quick else 240)


if __name__ == "__main__":
    main()
