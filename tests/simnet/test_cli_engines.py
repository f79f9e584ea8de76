"""The simnet command line, the task engines, and the public surface."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import simnet
from simnet._engines import _lcg_jump, expected_output, task_shape
from simnet.cli import EXIT_ERROR, EXIT_OK, main

TINY = """
[swarm]
name = "cli"
nodes = 4
seed = 9
duration_s = 1.5
drain_s = 5.0
ledger = "memory"
[links.lan]
latency_ms = 1.0
[profiles.laptop]
slots = 2
[workload]
rate_per_s = 6.0
start_s = 0.3
[[workload.mix]]
task = "echo"
"""


def test_run_writes_a_report_and_exits_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sc = tmp_path / "tiny.toml"
    sc.write_text(TINY)
    code = main(["run", str(sc), "--quiet", "--report", str(tmp_path / "rep"), "--seed", "10"])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert "invariants hold" in out and str(tmp_path / "rep" / "report.md") in out
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert doc["params"]["seed"] == 10 and doc["invariants_hold"] is True
    names = {f["name"] for f in doc["figures"]}
    assert {"simnet.task_latency_p99_ms", "simnet.tasks_lost", "simnet.ledgers_verified"} <= names


def test_bad_scenario_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sc = tmp_path / "bad.toml"
    sc.write_text("[workload]\nrate_per_s = 'fast'\n")
    assert main(["run", str(sc), "--quiet"]) == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("simnet: error: ") and "workload.rate_per_s" in err and "\n" not in err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "simnet" in capsys.readouterr().err


@pytest.mark.parametrize(("x", "n"), [(0, 0), (5, 1), (12345, 1000), (2**32 - 1, 5000)])
def test_lcg_jump_matches_stepping(x: int, n: int) -> None:
    y = x
    for _ in range(n):
        y = (y * 1664525 + 1013904223) & 0xFFFFFFFF
    assert _lcg_jump(x, n) == y


def test_task_shapes() -> None:
    echo = task_shape("echo", 7)
    assert echo.kind == "wasm" and echo.input == b"task 7\n" == expected_output("echo", 7)
    spin = task_shape("spin", 7)
    assert spin.module_hash != echo.module_hash and spin.input == (7).to_bytes(4, "little")
    assert expected_output("infer", 7) is None


def test_exports_are_explicit() -> None:
    for name in simnet.__all__:
        assert hasattr(simnet, name), name
    assert not [n for n in dir(simnet) if not n.startswith("_") and n not in simnet.__all__ and n != "cli"]
