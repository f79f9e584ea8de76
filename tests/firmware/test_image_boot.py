"""Build the arm64 test image and boot it under full-system emulation; read the self-test line.

``firmware/build-image.sh --profile test`` builds (layers cached under
/var/cache/edgenode-firmware, keyed by their inputs) a bookworm arm64 root with the node in a
venv, its hardened unit, first-boot provisioning (from a baked-in ``edgenode.toml``) and the
self-test unit. qemu-system-aarch64 boots it with 1 GiB and no network; the self-test reports
on the console and powers the machine off. Cold cache: about 15-20 minutes on 2 busy cores
(base root and the fastecdsa wheel); warm: a few minutes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILDER = REPO / "firmware" / "build-image.sh"
EDGENODE = Path(sys.executable).parent / "edgenode"
SELFTEST = re.compile(r"EDGE-SELFTEST (?P<fields>(?:\w+=\S*\s?)+)")


def _emulation_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the image build needs root (mmdebstrap --mode=root, chroot)"
    for tool in ("mmdebstrap", "qemu-system-aarch64", "mke2fs"):
        if shutil.which(tool) is None:
            return (
                f"{tool} is not installed (apt-get install mmdebstrap qemu-system-arm qemu-user-static binfmt-support)"
            )
    if not Path("/proc/sys/fs/binfmt_misc/register").exists():
        res = subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"],
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            return f"binfmt_misc cannot be mounted here ({res.stderr.strip()}): no arm64 user emulation"
    return None


def _has_command(*words: str) -> bool:
    res = subprocess.run([str(EDGENODE), *words, "--help"], capture_output=True, check=False, timeout=60)
    return res.returncode == 0


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(1500)
def test_test_image_boots_and_passes_its_self_test(tmp_path: Path) -> None:
    reason = _emulation_unavailable()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "image"
    build = subprocess.run(
        [str(BUILDER), "--profile", "test", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1320,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    for name in ("vmlinuz", "initrd.img", "root.ext4"):
        assert (out / name).stat().st_size > 0

    boot = subprocess.run(
        [
            "qemu-system-aarch64",
            "-M",
            "virt",
            "-cpu",
            "cortex-a57",
            "-m",
            "1024",
            "-smp",
            "2",
            "-nographic",
            "-nic",
            "none",
            "-no-reboot",
            "-kernel",
            str(out / "vmlinuz"),
            "-initrd",
            str(out / "initrd.img"),
            "-append",
            "root=/dev/vda rw console=ttyAMA0 panic=-1",
            "-drive",
            f"file={out / 'root.ext4'},format=raw,if=virtio",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=600,
        check=False,
    )
    console = boot.stdout
    (tmp_path / "console.log").write_text(console)
    match = SELFTEST.search(console)
    assert match, f"no self-test line; console tail:\n{console[-6000:]}"
    fields = dict(f.split("=", 1) for f in match.group("fields").split())

    assert fields["service"] == "active", console[-6000:]
    peer = fields["peer_id"]
    assert re.fullmatch(r"12D3KooW[1-9A-HJ-NP-Za-km-z]{44}", peer), peer
    # First-boot provisioning: hostname from the peer id, swarm from the boot partition's edgenode.toml.
    assert fields["hostname"] == "edge-" + re.sub(r"[^a-z0-9]", "", peer.lower())[-8:]
    assert fields["swarm"] == "ci"
    assert f"edgenode-firstboot: peer id {peer}" in console
    # The ledger verified if this release has `edgenode ledger verify`; else the line says so.
    assert fields["ledger"] == ("ok" if _has_command("ledger", "verify") else "unavailable")
    # The node itself came up (it logs "listening ...") when this release has `edgenode run`.
    assert fields["node"] == ("up" if _has_command("run") else "absent")
    assert 0 < int(fields["memory_bytes"]) < int(fields["memory_max"])
    assert int(fields["memory_max"]) == 512 * 1024 * 1024
    version = subprocess.run([str(EDGENODE), "--version"], capture_output=True, text=True, check=True).stdout
    assert fields["version"] == version.split()[-1]
    assert fields["ok"] == "1"
    # The machine powered itself off after reporting.
    assert boot.returncode == 0
