"""Federated learning on a running swarm: real ``edgenode run`` processes over libp2p on loopback.

    python benchmarks/bench_fl_swarm.py           # 3 nodes, 20 rounds (about a minute)
    python benchmarks/bench_fl_swarm.py --quick   # 3 nodes, 4 rounds

Starts N nodes (``[fl] partition = "K/N"``), runs ``edgenode fl start --bootstrap ... --json``
and times the per-round lines as they arrive.

Figures: fl.swarm_round_s (median seconds between consecutive round reports at the CLI),
fl.swarm_first_round_s (command to first report, including the 2 s start delay and joining),
fl.swarm_accuracy_final (mean accuracy across nodes after the last round).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, median, start_node, stop_nodes

EDGENODE = [sys.executable, "-m", "edgenode"]
ROOT = Path(__file__).resolve().parent.parent


def _node(home: Path, partition: str, bootstrap: list[str]) -> tuple[subprocess.Popen[str], str]:
    def configure(home: Path) -> None:
        cfg = home / "config.toml"
        cfg.write_text(cfg.read_text().replace('# partition = ""', f'partition = "{partition}"'))

    return start_node(home, bootstrap, configure, slots=None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args()
    n = args.nodes
    rounds = args.rounds or (4 if args.quick else 20)
    procs: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-fl-swarm-") as tmp:
        try:
            first, boot = _node(Path(tmp) / "n0", f"0/{n}", [])
            procs.append(first)
            for k in range(1, n):
                procs.append(_node(Path(tmp) / f"n{k}", f"{k}/{n}", [boot])[0])
            t0 = time.monotonic()
            cli = subprocess.Popen([*EDGENODE, "fl", "start", "--bootstrap", boot, "--rounds", str(rounds),
                                    "--strategy", "fedavg", "--quorum", str(n), "--json"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
            assert cli.stdout is not None
            stamps: list[float] = []
            last: dict[str, float] = {}
            for line in cli.stdout:
                stamps.append(time.monotonic())
                last = json.loads(line)
            rc = cli.wait(60)
            if rc != 0 or len(stamps) != rounds:
                raise RuntimeError(f"fl start exited {rc} after {len(stamps)} rounds: {cli.stderr.read()[-2000:]}")
        finally:
            stop_nodes(procs)
    params = {"nodes": n, "rounds": rounds, "model": "digits", "strategy": "fedavg", "transport": "libp2p-tcp"}
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    emit("fl.swarm_round_s", round(median(gaps), 4), "s", **params)
    emit("fl.swarm_first_round_s", round(stamps[0] - t0, 3), "s", **params)
    emit("fl.swarm_accuracy_final", round(float(last["accuracy"]), 4), "accuracy", **params)


if __name__ == "__main__":
    main()
