"""`edgenode init` and `edgenode id`, in-process and as a real process."""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edgenode.cli import main
from edgenode.config import NodeConfig, load_config
from edgenode.errors import LocalError
from edgenode.identity import Identity


def test_init_creates_key_and_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    assert main(["init", "--home", str(home)]) == 0
    key = home / "node.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    ident = Identity.load(key)
    assert ident.peer_id in capsys.readouterr().out
    # the commented template parses, names only known sections, and loads as the defaults
    parsed = tomllib.loads((home / "config.toml").read_text())
    assert set(parsed) == {f.name for f in dataclasses.fields(NodeConfig)}
    assert load_config(home) == NodeConfig()


def test_init_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--home", str(tmp_path)]) == 0
    before = (tmp_path / "node.key").read_bytes()
    assert main(["init", "--home", str(tmp_path)]) == 1
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "node.key").read_bytes() == before
    assert main(["init", "--home", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "node.key").read_bytes() != before


def test_id_prints_peer_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["init", "--home", str(tmp_path)])
    capsys.readouterr()
    assert main(["id", "--home", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == Identity.load(tmp_path / "node.key").peer_id


def test_id_without_key_is_one_line_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edgenode", "id", "--home", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "edgenode init" in proc.stderr


def test_config_rejects_unknown_and_ill_typed_keys(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[node]\nslotz = 3\n")
    with pytest.raises(LocalError, match="slotz"):
        load_config(tmp_path)
    (tmp_path / "config.toml").write_text("[node]\nslots = 'many'\n")
    with pytest.raises(LocalError, match="slots"):
        load_config(tmp_path)
    (tmp_path / "config.toml").write_text("[net]\nbootstrap = ['/ip4/127.0.0.1/tcp/1']\n[node]\nslots = 4\n")
    cfg = load_config(tmp_path)
    assert cfg.node.slots == 4 and cfg.net.bootstrap == ("/ip4/127.0.0.1/tcp/1",)
