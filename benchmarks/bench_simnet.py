"""simnet figures: wall time and peak RSS of large swarms, plus the demo report's figures.

    python benchmarks/bench_simnet.py                # 1,000 memnet nodes, the demo scenario, 100 libp2p nodes
    python benchmarks/bench_simnet.py --quick        # 100 memnet nodes, a short demo, 10 libp2p nodes
    python benchmarks/bench_simnet.py --only libp2p  # examples/scenarios/libp2p100.toml: 100 real libp2p hosts
    python benchmarks/bench_simnet.py --only demo-libp2p  # the demo scenario, 30 nodes, memnet vs real libp2p

Each figure is one JSON line: simnet.wall_s and simnet.peak_rss_mb (params: nodes, transport,
tasks_ok; on libp2p the RSS of the driver and of the largest worker process), then every figure
of the demo report (simnet.task_latency_p99_ms, simnet.fl_accuracy, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import resource
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, run_child

from simnet import default_scenario, parse_scenario, run_scenario
from simnet._swarm import make_backend

SCALE = {
    "swarm": {
        "name": "scale", "nodes": 1000, "seed": 1, "duration_s": 20.0, "drain_s": 15.0,
        "ledger": "memory", "advert_s": 10.0, "replicate": False,
    },
    "links": {"lan": {"latency_ms": 2.0, "jitter_ms": 1.0}, "wifi": {"latency_ms": 8.0, "jitter_ms": 4.0}},
    "profiles": {"pi": {"share": 0.7, "slots": 1, "link": "wifi", "speed": 0.25}, "laptop": {"share": 0.3, "slots": 4}},
    "workload": {"rate_per_s": 50.0, "submitters": 4, "start_s": 1.0,
                 "mix": [{"task": "echo", "deadline_ms": 2000}, {"task": "spin", "sla": "cost", "deadline_ms": 4000}]},
    "faults": [{"at_s": 8.0, "kind": "kill", "count": 50, "duration_s": 6.0}],
}  # fmt: skip


def _child(table: str) -> None:
    """Run one scenario in this process and print its summary as JSON (peak RSS included)."""
    sc = parse_scenario(json.loads(table))
    t0 = time.perf_counter()
    res = asyncio.run(run_scenario(sc, make_backend(sc)))
    wall = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # largest worker (libp2p)
    out = {"wall_s": wall, "peak_rss_mb": rss_mb, "worker_rss_mb": worker_mb, "invariants": res.invariants_hold,
           "figures": [f.as_json() for f in res.figures]}  # fmt: skip
    sys.stdout.write("SIMNET-RESULT " + json.dumps(out) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip the interpreter teardown (see simnet.cli.main)


def _run_child(table: dict[str, Any], timeout: float) -> dict[str, Any]:
    return run_child(__file__, json.dumps(table), "SIMNET-RESULT", timeout)


LIBP2P_SCENARIO = Path(__file__).resolve().parents[1] / "examples" / "scenarios" / "libp2p100.toml"
"""The libp2p scale run: real hosts need gossip-light settings (see the file and docs/simnet.md)."""


def scale(nodes: int, transport: str, duration: float, rate: float) -> None:
    if transport == "libp2p":
        table = tomllib.loads(LIBP2P_SCENARIO.read_text())
        table["swarm"].update(nodes=nodes, duration_s=duration)
        for f in table.get("faults", []):
            f["count"] = max(1, nodes // 25)
    else:
        table = json.loads(json.dumps(SCALE))
        table["swarm"].update(nodes=nodes, transport=transport, duration_s=duration)
        table["workload"]["rate_per_s"] = rate
        table["faults"][0]["count"] = max(1, nodes // 20)
    scenario = str(table["swarm"]["name"])
    res = _run_child(table, timeout=900)
    figs = {f["name"]: f["value"] for f in res["figures"] if not f["params"].get("sla")}
    common = {
        "nodes": nodes,
        "transport": transport,
        "tasks_ok": int(figs["simnet.tasks_ok"]),
        "tasks_submitted": int(figs["simnet.tasks_submitted"]),
        "invariants": bool(res["invariants"]),
    }
    emit("simnet.wall_s", round(float(res["wall_s"]), 2), "s", duration_s=duration, **common)
    emit("simnet.peak_rss_mb", round(float(res["peak_rss_mb"]), 1), "MB", process="driver", **common)
    if transport == "libp2p":
        emit("simnet.peak_rss_mb", round(float(res["worker_rss_mb"]), 1), "MB", process="worker", **common)
    for f in res["figures"]:
        if f["name"] in ("simnet.task_latency_p50_ms", "simnet.task_latency_p99_ms"):
            emit(
                f["name"], f["value"], "ms", nodes=nodes, transport=transport, scenario=scenario, sla=f["params"]["sla"]
            )
    units = {"simnet.throughput_per_s": "tasks/s", "simnet.gossip_delivery_p50_ms": "ms",
             "simnet.gossip_delivery_ratio": "ratio"}  # fmt: skip
    names = ["simnet.tasks_submitted", "simnet.tasks_ok", "simnet.tasks_lost", "simnet.throughput_per_s"]
    if transport == "libp2p":
        names += ["simnet.gossip_delivery_p50_ms", "simnet.gossip_delivery_ratio"]
    for name in names:
        if name in figs:
            emit(name, figs[name], units.get(name, "tasks"), nodes=nodes, transport=transport, scenario=scenario)


def demo(quick: bool) -> None:
    sc = default_scenario()
    if quick:
        sc = sc.with_overrides(duration_s=8.0)
    res = _run_child(dataclasses.asdict(sc) | {"faults": [dataclasses.asdict(f) for f in sc.faults]}, timeout=900)
    for f in res["figures"]:
        print(json.dumps(f))


def demo_on_both(nodes: int, quick: bool) -> None:
    """The default demo scenario (not a gossip-light one) on memnet and on real libp2p, same seed:
    invariants on both, and the libp2p task p99 as a multiple of memnet's."""
    p99: dict[str, dict[str, float]] = {}
    for transport in ("mem", "libp2p"):
        sc = default_scenario().with_overrides(nodes=nodes, transport=transport)
        if quick:
            sc = sc.with_overrides(duration_s=8.0)
        res = _run_child(dataclasses.asdict(sc) | {"faults": [dataclasses.asdict(f) for f in sc.faults]}, timeout=900)
        figs = {f["name"]: f["value"] for f in res["figures"] if not f["params"].get("sla")}
        p99[transport] = {
            f["params"]["sla"]: float(f["value"]) for f in res["figures"] if f["name"] == "simnet.task_latency_p99_ms"
        }
        common = {"nodes": nodes, "transport": transport, "scenario": "demo", "invariants": bool(res["invariants"]),
                  "load": round(os.getloadavg()[0], 2)}  # fmt: skip
        for name in ("simnet.tasks_ok", "simnet.tasks_lost", "simnet.tasks_duplicated"):
            emit(name, figs[name], "tasks", **common)
        for sla, v in sorted(p99[transport].items()):
            emit("simnet.task_latency_p99_ms", v, "ms", sla=sla, **common)
    for sla in sorted(p99["mem"]):
        if sla in p99["libp2p"] and p99["mem"][sla] > 0:
            emit("simnet.demo_libp2p_p99_ratio", round(p99["libp2p"][sla] / p99["mem"][sla], 2), "x",
                 nodes=nodes, sla=sla, goal=3.0)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small swarms, short runs")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--only", choices=("mem", "demo", "libp2p", "demo-libp2p"), help="run one part")
    args = p.parse_args()
    if args.child:
        _child(args.child)
        return
    if args.only in (None, "mem"):
        scale(100 if args.quick else 1000, "mem", 5.0 if args.quick else 20.0, 20.0)
    if args.only in (None, "demo"):
        demo(args.quick)
    if args.only in (None, "demo-libp2p"):
        demo_on_both(10 if args.quick else 30, args.quick)
    if args.only in (None, "libp2p"):
        try:
            scale(10 if args.quick else 100, "libp2p", 10.0 if args.quick else 30.0, 0.0)
        except RuntimeError as exc:
            print(f"libp2p scale run failed: {exc}", file=sys.stderr)


if __name__ == "__main__":
    main()
