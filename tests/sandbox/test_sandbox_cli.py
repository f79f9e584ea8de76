"""``edgenode exec``: real runs through the CLI entry point."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import wasmtime

from edgenode.cli import main
from edgenode.cli._common import EXIT_OK, EXIT_TASK_FAILED


@pytest.fixture
def wasm(tmp_path: Path, tasks: dict[str, bytes]) -> dict[str, Path]:
    out = {}
    for name, data in tasks.items():
        p = tmp_path / f"{name}.wasm"
        p.write_bytes(data)
        out[name] = p
    return out


def test_exec_ok_prints_stdout(wasm: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stdin = tmp_path / "in.txt"
    stdin.write_text("a b\nc\n")
    assert main(["exec", str(wasm["wordcount"]), "--stdin", str(stdin)]) == EXIT_OK
    assert capsys.readouterr().out == "2 3 6\n"


def test_exec_json(wasm: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["exec", str(wasm["exitcode"]), "--arg", "4", "--env", "WHO=cli", "--json"])
    assert code == EXIT_TASK_FAILED
    obj = json.loads(capsys.readouterr().out)
    assert obj["status"] == "exit" and obj["exit_code"] == 4
    assert obj["stdout_base64"] is False and "WHO=cli" in obj["stdout"]
    assert obj["fuel_used"] > 0 and obj["wall_ms"] >= 0


def test_exec_binary_stdout_is_base64(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mod = tmp_path / "bin.wasm"
    mod.write_bytes(
        wasmtime.wat2wasm("""
    (module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 16) "\\ff\\fe\\00")
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 3))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))""")
    )
    assert main(["exec", str(mod), "--json"]) == EXIT_OK
    obj = json.loads(capsys.readouterr().out)
    assert obj["stdout_base64"] is True
    assert base64.b64decode(obj["stdout"]) == b"\xff\xfe\x00"


@pytest.mark.parametrize(
    ("task", "flags", "status"),
    [
        ("loop", ["--fuel", "1000000"], "out_of_fuel"),
        ("loop", ["--timeout-ms", "30", "--fuel", "1000000000000"], "deadline"),
        ("membomb", ["--memory-mb", "4"], "memory_limit"),
        ("flood", ["--max-output", "100"], "output_limit"),
        ("stackbomb", [], "trap"),
    ],
)
def test_exec_limits(
    wasm: dict[str, Path], task: str, flags: list[str], status: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["exec", str(wasm[task]), "--json", *flags]) == EXIT_TASK_FAILED
    assert json.loads(capsys.readouterr().out)["status"] == status


def test_exec_digits_with_a_model_file(
    wasm: dict[str, Path], digits_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = tmp_path / "px.txt"
    stdin.write_text(" ".join(["0"] * 20 + ["16"] * 24 + ["0"] * 20))
    assert main(["exec", str(wasm["digits"]), "--stdin", str(stdin), "--model", str(digits_onnx)]) == EXIT_OK
    assert capsys.readouterr().out.startswith("digit ")


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgenode: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("content", [b"not wasm at all", b"(module)", b"\0asm\x01\0\0\0\x01\x05"])
def test_exec_bad_module_is_one_line(tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    mod = tmp_path / "bad.wasm"
    mod.write_bytes(content)
    assert main(["exec", str(mod)]) not in (EXIT_OK, EXIT_TASK_FAILED)
    assert "invalid module" in _one_line_error(capsys)


def test_exec_truncated_and_startless(
    wasm: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cut = tmp_path / "cut.wasm"
    cut.write_bytes(wasm["sha256"].read_bytes()[:300])
    assert main(["exec", str(cut)]) != EXIT_OK
    _one_line_error(capsys)
    assert main(["exec", str(wasm["nostart"])]) != EXIT_OK
    assert "_start" in _one_line_error(capsys)


def test_exec_missing_files(wasm: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exec", str(tmp_path / "nope.wasm")]) != EXIT_OK
    _one_line_error(capsys)
    assert main(["exec", str(wasm["digits"]), "--model", str(tmp_path / "nope.onnx")]) != EXIT_OK
    assert "nope.onnx" in _one_line_error(capsys)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert main(["exec", str(wasm["digits"]), "--model", str(bad)]) != EXIT_OK
    _one_line_error(capsys)
