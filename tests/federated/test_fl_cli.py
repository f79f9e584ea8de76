"""``edgenode fl``: the standalone local swarm and argument errors."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort

from edgenode.cli import main
from federated import load_digits_split


def test_fl_start_prints_rounds_and_saves_the_model(tmp_path, capsys):
    out = tmp_path / "digits.onnx"
    code = main(["fl", "start", "--nodes", "4", "--rounds", "3", "--strategy", "fedmedian", "--json",
                 "--save-onnx", str(out)])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["round"] for r in lines] == [0, 1, 2]
    assert all(r["updates"] == 4 and r["reason"] == "quorum" for r in lines)
    assert lines[-1]["accuracy"] > 0.8
    _, test = load_digits_split()
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    acc = float(np.mean(sess.run(None, {"x": test.x})[0].argmax(1) == test.y))
    assert abs(acc - lines[-1]["accuracy"]) < 1e-9


def test_fl_start_rejects_bad_arguments(capsys):
    assert main(["fl", "start", "--nodes", "0"]) == 1
    assert "edgenode: error:" in capsys.readouterr().err


def test_fl_run_without_a_superlink_fails_cleanly(tmp_path, capsys):
    code = main(["fl", "run", "--workdir", str(tmp_path), "--rounds", "1", "--timeout", "5"])
    assert code == 1
    assert capsys.readouterr().err.startswith("edgenode: error:")
