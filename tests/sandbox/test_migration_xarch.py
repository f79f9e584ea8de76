"""Cross-architecture migration: x86_64 -> aarch64 and aarch64 -> x86_64, identical output.

The aarch64 side is a real arm64 Debian python3.11 with the arm64 wheels of wasmtime, PyNaCl
and cffi (``scripts/xarch-python.sh`` unpacks them into /var/cache/edgenode-xarch), run
under ``qemu-aarch64-static`` user-mode emulation: wasmtime compiles the task to aarch64
code there. Both sides run ``tests/sandbox/xarch_peer.py`` on this checkout; the rewrite by
``wasm-opt`` (the host's binary, which the emulated Python starts natively) gives the same
code hash on both, which resume checks. Only runs on an x86_64 host with the emulator and
that root; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgenode.identity import Identity
from edgenode.sandbox import Sandbox, TaskIO, have_wasm_opt

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PEER = Path(__file__).with_name("xarch_peer.py")
XARCH = Path(os.environ.get("EDGENODE_XARCH_DIR", "/var/cache/edgenode-xarch"))
QEMU = shutil.which("qemu-aarch64-static")
STDIN = b"6 1 8 " + b" ".join(str(i * 7919 % 1000003).encode() for i in range(500))
X86 = Identity(bytes(range(32)))
ARM = Identity(bytes(range(2, 34)))


def _arm_python() -> list[str]:
    if platform.machine() != "x86_64":
        pytest.skip("the cross-architecture test emulates aarch64 on an x86_64 host")
    if not have_wasm_opt():
        pytest.skip("binaryen's wasm-opt is not installed (scripts/setup.sh)")
    root, site = XARCH / "rootfs", XARCH / "site"
    if QEMU is None or not (root / "usr/bin/python3.11").exists() or not (site / ".complete").exists():
        pytest.skip(f"no emulated aarch64 Python: run scripts/xarch-python.sh (qemu-user-static, {XARCH})")
    return [QEMU, "-L", str(root), str(root / "usr/bin/python3.11"), str(PEER)]


def _peer(cmd: list[str], *args: str, arm: bool) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    env["PYTHONPATH"] = f"{REPO}:{XARCH / 'site'}" if arm else str(REPO)
    proc = subprocess.run([*cmd, *args], capture_output=True, timeout=600, env=env, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    out: dict[str, str] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tasks: dict[str, bytes]) -> tuple[Path, Path, bytes]:
    tmp = tmp_path_factory.mktemp("xarch")
    module, stdin = tmp / "migrate.wasm", tmp / "stdin"
    module.write_bytes(tasks["migrate"])
    stdin.write_bytes(STDIN)
    with Sandbox() as sb:
        baseline = sb.run(sb.compile(tasks["migrate"]), TaskIO(stdin=STDIN)).stdout
    assert b"digest " in baseline
    return module, stdin, baseline


@pytest.mark.parametrize("every", [7, 900])
def test_x86_snapshot_resumes_on_aarch64_and_back(setup: tuple[Path, Path, bytes], every: int) -> None:
    arm = _arm_python()
    x86 = [sys.executable, str(PEER)]
    module, stdin, baseline = setup
    tmp = module.parent
    # x86_64 -> aarch64
    snap = tmp / f"x86-{every}.snap"
    took = _peer(x86, "checkpoint", str(module), str(stdin), str(every), X86.seed.hex(), str(snap), arm=False)
    assert took["machine"] == "x86_64" and took["status"] == "checkpointed"
    resumed = _peer(arm, "resume", str(module), str(stdin), str(snap), X86.public_key.hex(), arm=True)
    assert resumed["machine"] == "aarch64" and resumed["code_hash"] == took["code_hash"]
    assert resumed["status"] == "ok" and bytes.fromhex(resumed["stdout"]) == baseline
    # aarch64 -> x86_64
    snap = tmp / f"arm-{every}.snap"
    took = _peer(arm, "checkpoint", str(module), str(stdin), str(every), ARM.seed.hex(), str(snap), arm=True)
    assert took["machine"] == "aarch64" and took["status"] == "checkpointed"
    resumed = _peer(x86, "resume", str(module), str(stdin), str(snap), ARM.public_key.hex(), arm=False)
    assert resumed["machine"] == "x86_64" and resumed["status"] == "ok"
    assert bytes.fromhex(resumed["stdout"]) == baseline
