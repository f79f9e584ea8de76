"""CLI edges from issue 14: a fresh node's empty ledger is valid, config errors are one line,
and a closed pipe on stdout ends the command quietly."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgenode.cli import main
from edgenode.cli._common import EXIT_ERROR, EXIT_OK
from edgenode.config import load_config
from edgenode.errors import LocalError
from edgenode.identity import KEY_FILE, Identity
from ledger import LEDGER_DB, Ledger, SqliteLedgerStore


def _init(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--home", str(home)]) == EXIT_OK
    capsys.readouterr()


def test_fresh_node_ledger_is_empty_and_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _init(tmp_path, capsys)
    assert not (tmp_path / LEDGER_DB).exists()
    assert main(["ledger", "verify", "--home", str(tmp_path)]) == EXIT_OK
    assert "empty" in capsys.readouterr().out
    assert main(["ledger", "show", "--home", str(tmp_path)]) == EXIT_OK
    assert "empty" in capsys.readouterr().out
    assert main(["ledger", "verify", "--home", str(tmp_path), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == {"ok": True, "entries": 0, "integrity": [], "chains": []}
    assert main(["ledger", "show", "--home", str(tmp_path), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == {"chains": [], "forks": []}
    assert main(["ledger", "export", "--home", str(tmp_path)]) == EXIT_OK
    assert capsys.readouterr().out == ""
    assert not (tmp_path / LEDGER_DB).exists()  # reading never creates the database


def test_config_value_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _init(tmp_path, capsys)
    cfg = tmp_path / "config.toml"
    cfg.write_text(cfg.read_text().replace("[sandbox]\n", "[sandbox]\nmax_fuel = -5\n", 1))
    with pytest.raises(LocalError, match="sandbox"):
        load_config(tmp_path)
    assert main(["run", "--home", str(tmp_path)]) == EXIT_ERROR  # fails before anything opens
    err = capsys.readouterr().err
    assert err.startswith("edgenode: error: ") and err.count("\n") == 1 and "Traceback" not in err


class _ClosedPipe:
    """A stdout whose reader has gone."""

    def write(self, _s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")


def test_broken_pipe_in_process_is_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _init(tmp_path, capsys)
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["id", "--home", str(tmp_path)]) == EXIT_ERROR
    assert capsys.readouterr().err == ""


def test_broken_pipe_subprocess_export_head(tmp_path: Path) -> None:
    """``edgenode ledger export | head -1``: the exporter exits without a traceback."""
    ident = Identity.generate()
    tmp_path.mkdir(exist_ok=True)
    ident.save(tmp_path / KEY_FILE)

    async def fill() -> None:
        async with await SqliteLedgerStore.open(tmp_path / LEDGER_DB, synchronous="NORMAL") as s:
            led = Ledger(s, ident)
            await led.append_batch([("note", b"x" * 512, 1_000 + i) for i in range(2_000)])  # ~3 MB of JSON

    asyncio.run(fill())
    with subprocess.Popen(
        [sys.executable, "-m", "edgenode", "ledger", "export", "--home", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # as `head -1` does
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=120)
    assert json.loads(first)["seq"] == 1
    assert "Traceback" not in err and "BrokenPipe" not in err and err == "", err
    assert code == EXIT_ERROR
