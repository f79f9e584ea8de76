"""simnet's Ray backend beside the process backend: 100 real libp2p nodes, same scenario, same run.

    python benchmarks/bench_simnet_ray.py            # 100 nodes, examples/scenarios/libp2p100.toml (30 s of tasks)
    python benchmarks/bench_simnet_ray.py --quick    # 20 nodes, 10 s
    python benchmarks/bench_simnet_ray.py --nodes 50 --ray-nodes 2

Each backend runs in a child process.  The Ray one starts a local cluster of ``--ray-nodes``
Ray nodes on this machine (one raylet with 1 CPU each, on 127.0.0.1, 100 MB object store each,
no dashboard, a temporary directory removed afterwards); the process one starts one worker
process per core.  Figures: simnet.wall_s (params nodes, backend, ray_nodes), simnet.peak_rss_mb
per Ray node (the peak RSS of the node groups it hosted, summed; Ray's own daemons not counted)
and per backend, simnet.nodes_per_gb (real libp2p nodes per GiB of the groups' peak RSS),
simnet.cpu_pct_per_node and simnet.written_kb_per_node_s (the groups' CPU and bytes written,
per node, averaged over the run), simnet.ray_cluster_start_s, and the run's task figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, load_avg, run_child

from simnet import parse_scenario, run_scenario
from simnet._swarm import make_backend

SCENARIO = Path(__file__).resolve().parents[1] / "examples" / "scenarios" / "libp2p100.toml"


def _child(args: dict[str, Any]) -> None:
    """Run the scenario on one backend in this process; print its summary as JSON."""
    sc = parse_scenario(args["table"])
    out: dict[str, Any] = {}
    cluster = None
    tmp = ""
    address = None
    if args["backend"] == "ray":
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        from ray.cluster_utils import Cluster

        tmp = tempfile.mkdtemp(prefix="rayb-", dir="/tmp")
        node = {"num_cpus": 1, "object_store_memory": 100 * 1024 * 1024, "node_ip_address": "127.0.0.1"}
        t0 = time.perf_counter()
        cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False, "temp_dir": tmp})
        for _ in range(args["ray_nodes"] - 1):
            cluster.add_node(**node)
        cluster.wait_for_nodes(timeout=120)
        out["cluster_start_s"] = time.perf_counter() - t0
        address = cluster.address
    try:
        t0 = time.perf_counter()
        backend = make_backend(sc, backend=args["backend"], ray_address=address)
        res = asyncio.run(run_scenario(sc, backend))
        out.update(
            wall_s=time.perf_counter() - t0,
            driver_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            invariants=res.invariants_hold,
            figures=[f.as_json() for f in res.figures],
            placement=list(res.placement),
        )
    finally:
        if cluster is not None:
            cluster.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)
    sys.stdout.write("BENCH-RESULT " + json.dumps(out) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip the interpreter teardown (see simnet.cli.main)


def compare(nodes: int, ray_nodes: int, duration: float) -> None:
    table = tomllib.loads(SCENARIO.read_text())
    table["swarm"].update(nodes=nodes, duration_s=duration)
    for f in table.get("faults", []):
        f["count"] = max(1, nodes // 25)
    for backend in ("process", "ray"):
        load_before = load_avg()
        payload = json.dumps({"backend": backend, "table": table, "ray_nodes": ray_nodes})
        res = run_child(__file__, payload, "BENCH-RESULT", timeout=1200)
        figs = {f["name"]: f["value"] for f in res["figures"] if not {"sla", "reason"} & set(f["params"])}
        common = {
            "nodes": nodes, "backend": backend, "ray_nodes": ray_nodes if backend == "ray" else 0,
            "groups": len(res["placement"]), "duration_s": duration, "scenario": "libp2p100",
            "tasks_ok": int(figs["simnet.tasks_ok"]), "tasks_submitted": int(figs["simnet.tasks_submitted"]),
            "invariants": bool(res["invariants"]), "load": load_before, "load_after": load_avg(),
        }  # fmt: skip
        emit("simnet.wall_s", round(float(res["wall_s"]), 2), "s", **common)
        if "cluster_start_s" in res:
            emit("simnet.ray_cluster_start_s", round(float(res["cluster_start_s"]), 2), "s", **common)
        by_host: dict[str, float] = defaultdict(float)
        for row in res["placement"]:
            by_host[str(row.get("ray_node", row.get("host")))] += float(row["peak_rss_mb"])
        for k, (host, mb) in enumerate(sorted(by_host.items())):
            where = {"ray_node": k, "ray_node_id": host[:8]} if backend == "ray" else {"host": host}
            emit("simnet.peak_rss_mb", round(mb, 1), "MB", process="groups", **where, **common)
        emit("simnet.peak_rss_mb", round(float(res["driver_rss_mb"]), 1), "MB", process="driver", **common)
        groups_mb = sum(by_host.values())
        emit("simnet.nodes_per_gb", round(nodes / (groups_mb / 1024), 1), "nodes/GiB",
             measured="sum of the node groups' peak RSS", **common)  # fmt: skip
        wall = float(res["wall_s"])
        cpu_s = sum(float(row["cpu_s"]) for row in res["placement"])
        written_mb = sum(float(row["written_mb"]) for row in res["placement"])
        emit("simnet.cpu_pct_per_node", round(100 * cpu_s / nodes / wall, 2), "% of a core",
             measured="node groups' CPU seconds over the run (start-up, drain included)", **common)  # fmt: skip
        emit("simnet.written_kb_per_node_s", round(1000 * written_mb / nodes / wall, 2), "KB/s",
             measured="bytes the node groups wrote (sockets and ledger files): an upper bound of what "
             "the hosts sent", **common)  # fmt: skip
        for f in res["figures"]:
            if f["name"] in ("simnet.task_latency_p50_ms", "simnet.task_latency_p99_ms"):
                emit(f["name"], f["value"], "ms", sla=f["params"]["sla"], **common)
        units = {"simnet.tasks_lost": "tasks", "simnet.tasks_duplicated": "tasks",
                 "simnet.gossip_delivery_p50_ms": "ms", "simnet.gossip_delivery_ratio": "ratio"}  # fmt: skip
        for name, unit in units.items():
            if name in figs:
                emit(name, figs[name], unit, **common)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="20 nodes, 10 s of tasks")
    p.add_argument("--nodes", type=int, help="real libp2p nodes (default 100; 20 with --quick)")
    p.add_argument("--ray-nodes", type=int, default=2, help="Ray nodes of the local cluster (default 2)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(json.loads(args.child))
        return
    nodes = args.nodes or (20 if args.quick else 100)
    compare(nodes, args.ray_nodes, 10.0 if args.quick else 30.0)


if __name__ == "__main__":
    main()
