"""``edgenode models add|list|run|alias`` through the CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgenode.cli import main
from edgenode.cli._common import EXIT_OK
from edgenode.inference.digits import digits_dataset


def test_add_list_run_alias(tmp_path: Path, digits_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = ["--home", str(tmp_path / "home")]
    assert main(["models", "add", *home, str(digits_model), "--alias", "digits"]) == EXIT_OK
    h = capsys.readouterr().out.strip()
    assert len(h) == 64
    assert main(["models", "list", *home, "--json"]) == EXIT_OK
    (info,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert info["hash"] == h and info["aliases"] == ["digits"]
    assert info["inputs"] == [{"name": "x", "dtype": "float32", "shape": [None, 64]}]
    x, _ = digits_dataset()
    np.save(tmp_path / "x.npy", x[:3])
    assert main(["models", "run", *home, "digits", "--input", str(tmp_path / "x.npy"), "--json"]) == EXIT_OK
    probs = np.array(json.loads(capsys.readouterr().out)["outputs"]["probs"])
    assert probs.shape == (3, 10)
    (tmp_path / "x.json").write_text(json.dumps(x[:1].tolist()))
    assert main(["models", "run", *home, h, "--input", f"x={tmp_path / 'x.json'}"]) == EXIT_OK
    assert "probs float32[1, 10]" in capsys.readouterr().out
    assert main(["models", "alias", *home, "best", "digits"]) == EXIT_OK
    assert capsys.readouterr().out.strip() == h


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("edgenode: error: ") and "Traceback" not in err
    return err


def test_errors_are_one_line(tmp_path: Path, digits_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = ["--home", str(tmp_path / "home")]
    assert main(["models", "add", *home, str(tmp_path / "none.onnx")]) != EXIT_OK
    _err(capsys)
    assert main(["models", "run", *home, "digits", "--input", "x.npy"]) != EXIT_OK
    _err(capsys)
    main(["models", "add", *home, str(digits_model), "--alias", "d"])
    capsys.readouterr()
    (tmp_path / "bad.json").write_text(json.dumps([[1.0, 2.0]]))
    assert main(["models", "run", *home, "d", "--input", str(tmp_path / "bad.json")]) != EXIT_OK
    assert "shape [1, 2]" in _err(capsys)
