"""firmware/ota/edgenode-update on a scratch prefix: install beside, switch atomically, roll back.

The wheel sets hold a stand-in ``edgenode`` distribution (hand-made wheels) whose console
script exits 0 for a healthy release and 1 for a broken one; the health check runs it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UPDATE = REPO / "firmware" / "ota" / "edgenode-update"
BASE_PYTHON = Path(getattr(sys, "_base_executable", sys.executable))


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def make_wheel(dest: Path, version: str, healthy: bool) -> Path:
    """A minimal valid wheel named edgenode with an ``edgenode`` console script."""
    dist = f"edgenode-{version}.dist-info"
    files = {
        "edgenode/__init__.py": (
            f"import sys\nVERSION = {version!r}\n"
            f"def main():\n    print('edgenode', VERSION)\n    sys.exit({0 if healthy else 1})\n"
        ).encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: edgenode\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/entry_points.txt": b"[console_scripts]\nedgenode = edgenode:main\n",
    }
    record = [_record_line(n, d) for n, d in files.items()] + [f"{dist}/RECORD,,"]
    path = dest / f"edgenode-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return path


def run_update(prefix: Path, *args: str, restart_log: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        str(UPDATE),
        *args,
        "--prefix",
        str(prefix),
        "--python",
        str(BASE_PYTHON),
        "--restart",
        f"echo restart >> {restart_log}",
        "--health",
        f"{prefix}/current/bin/edgenode",
        "--health-timeout",
        "0",
        "--health-interval",
        "0",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, check=False)


def current(prefix: Path) -> str:
    return os.readlink(prefix / "current")


def active_version(prefix: Path) -> str:
    out = subprocess.run([str(prefix / "current" / "bin" / "edgenode")], capture_output=True, text=True, check=False)
    return out.stdout.split()[-1]


@pytest.fixture
def wheelsets(tmp_path: Path) -> dict[str, Path]:
    sets = {}
    for version, healthy in (("1.0.0", True), ("1.1.0", True), ("2.0.0", False)):
        d = tmp_path / f"wheels-{version}"
        d.mkdir()
        make_wheel(d, version, healthy)
        sets[version] = d
    return sets


def test_install_upgrade_rollback_and_status(tmp_path: Path, wheelsets: dict[str, Path]) -> None:
    prefix = tmp_path / "opt"
    log = tmp_path / "restarts"

    first = run_update(prefix, "install", "--wheels", str(wheelsets["1.0.0"]), restart_log=log)
    assert first.returncode == 0, first.stderr
    assert current(prefix) == "releases/1.0.0"
    assert active_version(prefix) == "1.0.0"
    assert not (prefix / "previous").exists()

    # A healthy upgrade: installed beside the old release, switched, old one kept as previous.
    up = run_update(prefix, "install", "--wheels", str(wheelsets["1.1.0"]), restart_log=log)
    assert up.returncode == 0, up.stderr
    assert current(prefix) == "releases/1.1.0"
    assert os.readlink(prefix / "previous") == "releases/1.0.0"
    assert active_version(prefix) == "1.1.0"
    assert (prefix / "releases" / "1.0.0" / ".complete").exists()

    # A version the wheel set does not hold: pip fails, nothing is switched.
    missing = run_update(prefix, "install", "--wheels", str(wheelsets["1.1.0"]), "--version", "9.9.9", restart_log=log)
    assert missing.returncode == 1
    assert "nothing switched" in missing.stderr
    assert current(prefix) == "releases/1.1.0"
    assert not (prefix / "releases" / "9.9.9").exists()

    # A broken release: the health check fails, current goes back to 1.1.0, 2.0.0 is marked bad.
    bad = run_update(prefix, "install", "--wheels", str(wheelsets["2.0.0"]), restart_log=log)
    assert bad.returncode == 3, bad.stdout + bad.stderr
    assert "rolled back to 1.1.0" in bad.stdout
    assert current(prefix) == "releases/1.1.0"
    assert active_version(prefix) == "1.1.0"
    assert (prefix / "releases" / "2.0.0" / ".bad").exists()
    assert os.readlink(prefix / "previous") == "releases/1.0.0"
    # Each switch restarted the service: three installs plus the roll-back's restart.
    assert log.read_text().count("restart") == 4

    status = run_update(prefix, "status", restart_log=log)
    assert status.returncode == 0
    assert "current 1.1.0" in status.stdout
    assert "release 2.0.0 bad" in status.stdout

    # Same version again is a no-op.
    again = run_update(prefix, "install", "--wheels", str(wheelsets["1.1.0"]), restart_log=log)
    assert again.returncode == 0 and "already at 1.1.0" in again.stdout

    # Manual roll-back to the previous release, and the links swap.
    back = run_update(prefix, "rollback", restart_log=log)
    assert back.returncode == 0, back.stderr
    assert current(prefix) == "releases/1.0.0"
    assert os.readlink(prefix / "previous") == "releases/1.1.0"
    assert active_version(prefix) == "1.0.0"


def test_first_install_unhealthy_has_nothing_to_roll_back(tmp_path: Path, wheelsets: dict[str, Path]) -> None:
    prefix = tmp_path / "opt"
    res = run_update(prefix, "install", "--wheels", str(wheelsets["2.0.0"]), restart_log=tmp_path / "r")
    assert res.returncode == 1
    assert "nothing to roll back to" in res.stderr


def test_usage_errors(tmp_path: Path) -> None:
    assert subprocess.run([str(UPDATE)], capture_output=True, check=False).returncode == 2
    assert subprocess.run([str(UPDATE), "frobnicate"], capture_output=True, check=False).returncode == 2
    res = subprocess.run(
        [str(UPDATE), "rollback", "--prefix", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 1 and "no previous release" in res.stderr
