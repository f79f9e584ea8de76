"""``edgenode ledger show|verify|export``: in-process, and once as a real subprocess."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edgenode.cli import main
from edgenode.cli._common import EXIT_ERROR, EXIT_OK, EXIT_REMOTE
from edgenode.identity import Identity, peer_id_from_public_key
from ledger import LEDGER_DB, Ledger, SqliteLedgerStore


def _make_home(home: Path, n: int = 6) -> Identity:
    ident = Identity.generate()

    async def fill() -> None:
        async with await SqliteLedgerStore.open(home / LEDGER_DB) as store:
            led = Ledger(store, ident)  # edgenode's Identity is a ledger Signer
            await led.append("genesis", b"", 1_000)
            await led.append_batch([("task_result", f"r{i}".encode(), 1_001 + i) for i in range(n - 1)])

    home.mkdir(parents=True, exist_ok=True)
    asyncio.run(fill())
    return ident


def test_show_verify_export_on_a_good_ledger(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ident = _make_home(tmp_path)
    assert main(["ledger", "show", "--home", str(tmp_path), "--json"]) == EXIT_OK
    shown = json.loads(capsys.readouterr().out)
    assert shown["chains"][0]["author"] == ident.peer_id and shown["chains"][0]["length"] == 6
    assert shown["forks"] == []
    assert main(["ledger", "show", "--home", str(tmp_path)]) == EXIT_OK
    assert ident.peer_id in capsys.readouterr().out

    assert main(["ledger", "verify", "--home", str(tmp_path)]) == EXIT_OK
    assert "ok: 6 entries" in capsys.readouterr().out
    assert main(["ledger", "verify", "--home", str(tmp_path), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["ok"] is True

    assert main(["ledger", "export", "--home", str(tmp_path)]) == EXIT_OK
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["seq"] for x in lines] == [1, 2, 3, 4, 5, 6]
    assert lines[2]["body"] == b"r1".hex() and lines[1]["prev"] == lines[0]["hash"]
    assert main(["ledger", "export", "--home", str(tmp_path), "--json", "--no-body"]) == EXIT_OK
    arr = json.loads(capsys.readouterr().out)
    assert len(arr) == 6 and "body" not in arr[0] and arr[0]["kind"] == "genesis"


def test_verify_names_author_seq_and_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ident = _make_home(tmp_path)
    conn = sqlite3.connect(tmp_path / LEDGER_DB)
    with conn:
        conn.execute("DELETE FROM entries WHERE seq = 4")
    conn.close()
    assert main(["ledger", "verify", "--home", str(tmp_path)]) == EXIT_REMOTE
    err = capsys.readouterr().err
    assert f"chain of {ident.peer_id} fails at seq 4: gap" in err
    assert main(["ledger", "verify", "--home", str(tmp_path), "--json"]) == EXIT_REMOTE
    [chain] = json.loads(capsys.readouterr().out)["chains"]
    assert (chain["first_bad_seq"], chain["reason"], chain["verified"]) == (4, "gap", 3)
    # export still gives every readable entry
    assert main(["ledger", "export", "--home", str(tmp_path), "--json"]) == EXIT_OK
    assert [x["seq"] for x in json.loads(capsys.readouterr().out)] == [1, 2, 3, 5, 6]


def test_export_skips_a_corrupt_row_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _make_home(tmp_path)
    conn = sqlite3.connect(tmp_path / LEDGER_DB)
    with conn:
        conn.execute("UPDATE entries SET signature = x'01' WHERE seq = 2")
    conn.close()
    assert main(["ledger", "export", "--home", str(tmp_path), "--json"]) == EXIT_OK
    out = capsys.readouterr()
    assert [x["seq"] for x in json.loads(out.out)] == [1, 3, 4, 5, 6] and "skipped" in out.err
    assert main(["ledger", "verify", "--home", str(tmp_path)]) == EXIT_REMOTE
    assert "fails at seq 2: malformed" in capsys.readouterr().err


def test_show_survives_a_corrupt_head_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ident = _make_home(tmp_path)
    conn = sqlite3.connect(tmp_path / LEDGER_DB)
    with conn:
        conn.execute("UPDATE entries SET prev = x'00' WHERE seq = 6")
    conn.close()
    assert main(["ledger", "show", "--home", str(tmp_path), "--json"]) == EXIT_OK
    [row] = json.loads(capsys.readouterr().out)["chains"]
    assert row["author"] == ident.peer_id and row["length"] == 6 and row["head"] is None
    assert "corrupt" in row["problem"]


@pytest.mark.parametrize("content", [None, b"garbage" * 1000])
def test_missing_or_garbage_database_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None
) -> None:
    if content is not None:
        (tmp_path / LEDGER_DB).write_bytes(content)
    for action in ("show", "verify", "export"):
        assert main(["ledger", action, "--home", str(tmp_path)]) == EXIT_ERROR
        err = capsys.readouterr().err
        assert err.startswith("edgenode: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / LEDGER_DB).exists() or content is not None  # show never creates a database


def test_subprocess_verify(tmp_path: Path) -> None:
    ident = _make_home(tmp_path, n=3)
    cmd = [sys.executable, "-m", "edgenode", "ledger", "verify", "--home", str(tmp_path)]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert ok.returncode == EXIT_OK, ok.stderr
    conn = sqlite3.connect(tmp_path / LEDGER_DB)
    with conn:
        conn.execute("UPDATE entries SET kind = 'forged' WHERE seq = 2")
    conn.close()
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == EXIT_REMOTE
    assert bad.stderr.strip() == (
        f"edgenode: error: chain of {peer_id_from_public_key(ident.public_key)} fails at seq 2: bad_signature"
    )
