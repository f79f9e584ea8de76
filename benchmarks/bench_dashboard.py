"""Dashboard figures, on a 30-node memnet simulation watched by headless Chromium.

    python benchmarks/bench_dashboard.py               # a 60 s window (the figure's definition)
    python benchmarks/bench_dashboard.py --window 15   # shorter, for a quick look

* ``dashboard.update_lag_ms``: from a task's verified receipt (the driver records it, wall clock)
  to its row inserted on the page, read in the browser (``window.dashStats.lags``); p99 over every
  task of the window (p50 in params).
* ``dashboard.cpu_pct``: the dashboard's CPU on the process it runs in (the simulation's driver,
  which also runs the 30 nodes), in % of one core over the window: py-spy samples this process
  at 100 Hz, and every sample whose stack is in the dashboard (``edgenode/dashboard``,
  ``simnet/_live.py``, ``starlette``, ``uvicorn``, ``h11``) counts.  The page stays connected
  for the whole window.  Start-up (server bind, the centralized FL baseline it computes once)
  happens before the window.

Needs chromium (scripts/setup.sh installs it) and py-spy (the dev extra); without chromium it
prints nothing and says why on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, load_avg, percentile

from edgenode.dashboard import DashboardServer
from edgenode.dashboard.headless import Chromium, find_chromium
from simnet._live import run_live
from simnet._scenario import default_scenario
from simnet._swarm import make_backend

DASHBOARD_FRAMES = ("(edgenode/dashboard/", "(simnet/_live.py", "(starlette/", "(uvicorn/", "(h11/")
"""py-spy names a frame ``function (path/relative/to/sys.path:line)``."""
RATE_HZ = 100


def _py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else None


def dashboard_samples(raw: Path) -> tuple[int, int]:
    """(samples in dashboard frames, all samples) from py-spy's raw (folded) output."""
    dash = total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        if any(f in stack for f in DASHBOARD_FRAMES):
            dash += int(n)
    return dash, total


async def bench(window_s: float, nodes: int, seed: int) -> None:
    sc = default_scenario().with_overrides(nodes=nodes, duration_s=window_s + 15.0, seed=seed)
    serving: asyncio.Future[DashboardServer] = asyncio.get_running_loop().create_future()
    run = asyncio.create_task(run_live(sc, make_backend(sc), port=0, on_serving=serving.set_result))
    await asyncio.wait({serving, run}, return_when=asyncio.FIRST_COMPLETED)
    if run.done():
        run.result()
    server = serving.result()
    spy = _py_spy()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "spy.txt"
        async with await Chromium.launch(offline=True) as b:
            await b.goto(server.url)
            await b.wait_for("window.dashStats && window.dashStats.snapshots > 0", 120)
            await b.wait_for("window.dashStats.rows > 0", 120)  # the workload is on
            await b.eval("window.dashStats.lags = []")
            proc = None
            if spy is not None:
                proc = await asyncio.to_thread(
                    subprocess.Popen,
                    [spy, "record", "--pid", str(os.getpid()), "--rate", str(RATE_HZ), "--duration",
                     str(int(window_s)), "--format", "raw", "--output", str(raw), "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            t0, c0 = time.monotonic(), time.process_time()
            await asyncio.sleep(window_s)
            wall, cpu = time.monotonic() - t0, time.process_time() - c0
            stats = await b.eval("({lags: window.dashStats.lags, deltas: window.dashStats.deltas, "
                                 "rows: window.dashStats.rows, errors: window.dashStats.errors})")
            if proc is not None:
                _out, err = await asyncio.to_thread(proc.communicate, None, 60)
                if proc.returncode != 0:
                    print(f"bench_dashboard: py-spy failed: {err.decode()[-300:]}", file=sys.stderr)
                    proc = None
        lags = stats["lags"]
        params = {"nodes": nodes, "transport": "mem", "scenario": sc.swarm.name, "window_s": round(wall, 1),
                  "tasks": len(lags), "deltas": stats["deltas"], "load": load_avg()}
        if lags:
            emit("dashboard.update_lag_ms", percentile(lags, 99), "ms", p50_ms=percentile(lags, 50), **params)
        if proc is not None and raw.exists():
            dash, total = await asyncio.to_thread(dashboard_samples, raw)
            emit("dashboard.cpu_pct", round(100.0 * dash / (RATE_HZ * wall), 2), "%",
                 method="py-spy samples in dashboard frames", process_cpu_pct=round(100.0 * cpu / wall, 1),
                 dashboard_samples=dash, samples=total, rate_hz=RATE_HZ, **params)
        else:
            print("bench_dashboard: no py-spy, no dashboard.cpu_pct", file=sys.stderr)
    with contextlib.suppress(Exception):
        await run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=float, default=60.0, help="seconds measured (default 60)")
    ap.add_argument("--nodes", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if find_chromium() is None:
        print("bench_dashboard: no chromium (apt-get install chromium); skipped", file=sys.stderr)
        return 0
    asyncio.run(bench(args.window, args.nodes, args.seed))
    return 0


if __name__ == "__main__":
    sys.stdout.flush()
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # as simnet does: skip wasmtime's teardown at interpreter exit
