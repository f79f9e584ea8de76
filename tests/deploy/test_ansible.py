"""deploy/ansible/edgenode.yml: check mode against this machine, and a real run into a scratch root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgenode.config import load_config

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "deploy" / "ansible" / "edgenode.yml"
ANSIBLE = Path(sys.executable).parent / "ansible-playbook"

pytestmark = pytest.mark.skipif(not ANSIBLE.exists(), reason="ansible-core is not installed (pip install -e '.[dev]')")

BOOTSTRAP = ["/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"]


def _wheelset(tmp_path: Path) -> Path:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "edgenode-0.3.1-py3-none-any.whl").write_bytes(b"stand-in wheel")
    (wheels / "numpy-2.0.0-cp311-cp311-manylinux_2_17_aarch64.whl").write_bytes(b"stand-in wheel")
    return wheels


def _play(tmp_path: Path, *extra: str, extra_vars: dict[str, object]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
    env["ANSIBLE_HOME"] = str(tmp_path / "ansible-home")
    vars_ = {"edgenode_hosts": "all", "ansible_python_interpreter": sys.executable, **extra_vars}
    return subprocess.run(
        [str(ANSIBLE), "-i", "localhost,", "-c", "local", str(PLAYBOOK), "-e", json.dumps(vars_), *extra],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )


def test_check_mode_on_this_machine_changes_nothing(tmp_path: Path) -> None:
    before = Path("/etc/systemd/system/edgenode.service").exists()
    res = _play(
        tmp_path,
        "--check",
        "--diff",
        extra_vars={"edgenode_wheels_dir": str(_wheelset(tmp_path)), "edgenode_bootstrap": BOOTSTRAP},
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "failed=0" in res.stdout
    # The diff shows the rendered config with the bootstrap peer, and nothing was written.
    assert BOOTSTRAP[0] in res.stdout
    assert Path("/etc/systemd/system/edgenode.service").exists() == before


def _scratch_vars(root: Path, wheels: Path) -> dict[str, object]:
    return {
        "edgenode_root": str(root),
        "edgenode_wheels_dir": str(wheels),
        "edgenode_bootstrap": BOOTSTRAP,
        "edgenode_swarm": "lab",
        "edgenode_slots": 4,
        "edgenode_memory_max": "768M",
        "edgenode_become": False,
    }


def test_installs_into_a_scratch_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    res = _play(tmp_path, extra_vars=_scratch_vars(root, _wheelset(tmp_path)))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    home = root / "var/lib/edgenode"
    # The rendered config.toml is one the node itself accepts, with the fleet's settings.
    cfg = load_config(home)
    assert cfg.net.bootstrap == tuple(BOOTSTRAP)
    assert cfg.node.slots == 4
    assert (root / "etc/default/edgenode").read_text().splitlines()[-1] == "EDGENODE_SWARM=lab"
    assert "MemoryMax=768M" in (root / "etc/systemd/system/edgenode.service.d/50-memory.conf").read_text()
    assert (root / "etc/systemd/system/edgenode.service").read_text() == (
        REPO / "deploy/systemd/edgenode.service"
    ).read_text()
    assert os.access(root / "usr/local/sbin/edgenode-update", os.X_OK)
    assert (root / "opt/edgenode/wheels/0.3.1/edgenode-0.3.1-py3-none-any.whl").exists()
    assert (home / "config.toml").stat().st_mode & 0o077 == 0


@pytest.mark.slow
def test_second_run_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    wheels = _wheelset(tmp_path)
    assert _play(tmp_path, extra_vars=_scratch_vars(root, wheels)).returncode == 0
    again = _play(tmp_path, extra_vars=_scratch_vars(root, wheels))
    assert again.returncode == 0
    assert "changed=0" in again.stdout, again.stdout[-3000:]


@pytest.mark.slow
def test_two_wheels_without_a_version_is_refused(tmp_path: Path) -> None:
    wheels = _wheelset(tmp_path)
    (wheels / "edgenode-0.4.0-py3-none-any.whl").write_bytes(b"stand-in wheel")
    res = _play(
        tmp_path,
        "--check",
        extra_vars={"edgenode_root": str(tmp_path / "root"), "edgenode_wheels_dir": str(wheels)},
    )
    assert res.returncode != 0
    assert "Pick the release to install" in res.stdout
