"""Shared helpers for benchmark scripts: one JSON line per figure on stdout."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["emit", "percentile", "median", "start_node", "stop_nodes", "proc_cpu_s", "load_avg", "run_child"]


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; ``samples`` need not be sorted."""
    if not samples:
        raise ValueError("no samples")
    s = sorted(samples)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return float(s[k])


def proc_cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system, all threads) used so far by process ``pid`` (default: this one)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_avg() -> float:
    """The machine's 1-minute load average (params of every timing figure)."""
    return round(os.getloadavg()[0], 2)


def median(samples: Sequence[float]) -> float:
    return float(statistics.median(samples))


def emit(name: str, value: float, unit: str, **params: Any) -> None:
    """Print one figure as a JSON line: name, value, unit, params."""
    sys.stdout.write(json.dumps({"name": name, "value": value, "unit": unit, "params": params}, sort_keys=False) + "\n")
    sys.stdout.flush()


def run_child(script: str, payload: str, marker: str, timeout: float) -> dict[str, Any]:
    """Run ``python SCRIPT --child PAYLOAD`` and return the JSON after ``MARKER `` on its stdout
    (a scenario run in a fresh process: its own peak RSS, no state left from the last one)."""
    proc = subprocess.run(
        [sys.executable, script, "--child", payload], capture_output=True, text=True, timeout=timeout, check=False
    )
    for line in proc.stdout.splitlines():
        if line.startswith(marker + " "):
            res: dict[str, Any] = json.loads(line[len(marker) + 1 :])
            return res
    raise RuntimeError(f"child run failed (rc {proc.returncode}): {proc.stderr[-2000:]}")


def start_node(
    home: Path, bootstrap: list[str], configure: Callable[[Path], None] | None = None, slots: int | None = 2
) -> tuple[subprocess.Popen[str], str]:
    """``edgenode run`` on 127.0.0.1 in a fresh ``home``; the process and its first listen address.

    ``configure(home)`` runs after ``edgenode init`` (to write a certificate or config.toml);
    ``slots=None`` leaves the config's slot count.
    """
    py = [sys.executable, "-m", "edgenode"]
    subprocess.run([*py, "init", "--home", str(home)], check=True, capture_output=True)
    if configure is not None:
        configure(home)
    cmd = [*py, "run", "--home", str(home), "--listen", "/ip4/127.0.0.1/tcp/0", "--quiet"]
    if slots is not None:
        cmd += ["--slots", str(slots)]
    if bootstrap:
        cmd += ["--bootstrap", *bootstrap]
    err = open(home / "stderr.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"node failed: {(home / 'stderr.log').read_text()[-1000:]}")
        if line.startswith("listening "):
            return proc, line.split()[-1]
    proc.kill()
    raise RuntimeError(f"node in {home} did not start in 60 s")


def stop_nodes(procs: Sequence[subprocess.Popen[str]]) -> None:
    """SIGTERM every node process, then wait for each and close its stdout."""
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(60)
        if p.stdout:
            p.stdout.close()
