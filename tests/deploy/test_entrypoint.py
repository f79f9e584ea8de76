"""deploy/container/entrypoint.sh writes a config.toml the node accepts (run without Docker)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edgenode.config import load_config
from edgenode.identity import KEY_FILE, Identity

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "deploy" / "container" / "entrypoint.sh"
BOOT_PEER = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    full = {"PATH": path, "EDGENODE_ENTRYPOINT_CHECK": "1", **env}
    return subprocess.run([str(ENTRYPOINT)], capture_output=True, text=True, env=full, timeout=120, check=False)


def test_peer_dials_the_bootstrap_from_its_peer_id_file(tmp_path: Path) -> None:
    peer_file = tmp_path / "bootstrap.peer"
    peer_file.write_text(BOOT_PEER + "\n")
    home = tmp_path / "home"
    res = _run(
        {
            "EDGENODE_HOME": str(home),
            "EDGENODE_BOOTSTRAP_HOST": "localhost",
            "EDGENODE_BOOTSTRAP_PEER_FILE": str(peer_file),
            "EDGENODE_BOOTSTRAP_ADDRS": f"/ip4/10.0.0.9/tcp/4001/p2p/{BOOT_PEER}",
            "EDGENODE_LISTEN_PORT": "4101",
        }
    )
    assert res.returncode == 0, res.stderr
    own = Identity.load(home / KEY_FILE).peer_id
    assert f"peer id {own}" in res.stdout
    cfg = load_config(home)
    assert cfg.net.listen == ("/ip4/0.0.0.0/tcp/4101",)
    assert cfg.net.bootstrap == (f"/ip4/127.0.0.1/tcp/4001/p2p/{BOOT_PEER}", f"/ip4/10.0.0.9/tcp/4001/p2p/{BOOT_PEER}")


def test_bootstrap_node_publishes_its_id_and_does_not_dial_itself(tmp_path: Path) -> None:
    ident = Identity.generate()
    key = tmp_path / "secret.key"
    ident.save(key)
    out = tmp_path / "shared" / "bootstrap.peer"
    out.parent.mkdir()
    home = tmp_path / "home"
    res = _run(
        {
            "EDGENODE_HOME": str(home),
            "EDGENODE_KEY_FILE": str(key),
            "EDGENODE_PEER_ID_OUT": str(out),
            "EDGENODE_BOOTSTRAP_HOST": "localhost",
            "EDGENODE_BOOTSTRAP_PEER": ident.peer_id,
        }
    )
    assert res.returncode == 0, res.stderr
    assert out.read_text().strip() == ident.peer_id
    assert Identity.load(home / KEY_FILE).peer_id == ident.peer_id
    assert load_config(home).net.bootstrap == ()
    assert (home / KEY_FILE).stat().st_mode & 0o077 == 0


def test_missing_bootstrap_peer_gives_up_in_bounded_time(tmp_path: Path) -> None:
    res = _run(
        {
            "EDGENODE_HOME": str(tmp_path / "home"),
            "EDGENODE_BOOTSTRAP_HOST": "localhost",
            "EDGENODE_BOOTSTRAP_PEER_FILE": str(tmp_path / "never"),
            "EDGENODE_BOOTSTRAP_WAIT": "0",
        }
    )
    assert res.returncode == 4
    assert "no bootstrap peer id" in res.stderr
