"""The hardened systemd units, checked by systemd itself (``systemd-analyze verify/security``).

Units are verified inside a scratch root holding the host's systemd unit library, the
files the units name, and our units, so the check sees exactly what a device sees.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
FIRMWARE = REPO / "firmware"
HOST_UNITS = next((p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()), None)

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or HOST_UNITS is None,
    reason="systemd-analyze and a systemd unit library are needed (Debian package systemd)",
)


def _scratch_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)  # type: ignore[arg-type]
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    shutil.copy(DEPLOY / "systemd/edgenode.service", units)
    shutil.copytree(FIRMWARE / "rootfs", root, dirs_exist_ok=True, symlinks=True)
    shutil.copytree(FIRMWARE / "selftest", root, dirs_exist_ok=True, symlinks=True)
    # What ExecStart= lines point at must exist and be executable.
    (root / "usr/lib/edgenode").mkdir(parents=True, exist_ok=True)
    shutil.copy(DEPLOY / "bin/edgenode-service", root / "usr/lib/edgenode/edgenode-service")
    py = root / "opt/edgenode/current/bin/python"
    py.parent.mkdir(parents=True)
    py.write_text("#!/bin/sh\n")
    py.chmod(0o755)
    for tool in ("bin/systemctl",):
        target = root / tool
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("#!/bin/sh\n")
        target.chmod(0o755)
    return root


def _verify(root: Path, unit: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", unit],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("unit", ["edgenode.service", "edgenode-firstboot.service", "edgenode-selftest.service"])
def test_units_verify_cleanly(tmp_path: Path, unit: str) -> None:
    res = _verify(_scratch_root(tmp_path), unit)
    assert res.returncode == 0, res.stderr
    # systemd only warns (exit 0) about unknown keys or bad values: treat any output as a failure.
    assert res.stderr.strip() == "", res.stderr


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check is real: a typo'd key and a missing ExecStart binary are reported."""
    root = _scratch_root(tmp_path)
    unit = root / "etc/systemd/system/edgenode.service"
    unit.write_text(unit.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    res = _verify(root, "edgenode.service")
    assert "Unknown key" in res.stderr and "NoNewPrivilege" in res.stderr
    (root / "usr/lib/edgenode/edgenode-service").unlink()
    res = _verify(root, "edgenode.service")
    assert res.returncode != 0


def test_node_unit_is_hardened(tmp_path: Path) -> None:
    text = (DEPLOY / "systemd/edgenode.service").read_text()
    settings = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith(("#", "[")))
    assert settings["User"] == "edgenode"
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict"
    assert settings["MemoryMax"] == "512M"
    assert settings["CapabilityBoundingSet"] == ""
    # wasmtime JIT-compiles: W^X enforcement would break the sandbox.
    assert "MemoryDenyWriteExecute" not in settings
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", f"--root={_scratch_root(tmp_path)}", "edgenode.service"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for edgenode.service: ([0-9.]+)", res.stdout)
    assert match, res.stdout + res.stderr
    assert float(match.group(1)) <= 4.0, res.stdout  # systemd rates <= 4.0 as "OK"


def test_sysusers_and_sysctl_dropins() -> None:
    sysusers = (DEPLOY / "systemd/edgenode.sysusers").read_text().split("\n")
    entries = [line.split() for line in sysusers if line and not line.startswith("#")]
    assert entries[0][:3] == ["u", "edgenode", "-"]
    sysctl = [
        line
        for line in (DEPLOY / "sysctl/90-edgenode.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    values = {k.strip(): v.strip() for k, v in (line.split("=", 1) for line in sysctl)}
    assert int(values["vm.max_map_count"]) > 65530  # above the kernel default
