"""Every shell script in firmware/ and deploy/ passes shellcheck; the builder's CLI behaves."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHELLCHECK = shutil.which("shellcheck")


def _shell_scripts() -> list[Path]:
    found = []
    for tree in (REPO / "firmware", REPO / "deploy"):
        for path in sorted(tree.rglob("*")):
            if path.is_file() and not path.is_symlink():
                head = path.read_bytes()[:64]
                if head.startswith(b"#!") and (b"sh\n" in head.split(b"\n", 1)[0] + b"\n"):
                    found.append(path)
    return found


SCRIPTS = _shell_scripts()


def test_the_scripts_are_found() -> None:
    names = {p.name for p in SCRIPTS}
    assert {"build-image.sh", "edgenode-update", "install-jetpack.sh", "edgenode-service", "entrypoint.sh"} <= names
    assert {"selftest", "edgenode"} <= names


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed (scripts/setup.sh installs it)")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shellcheck(script: Path) -> None:
    res = subprocess.run(
        [str(SHELLCHECK), "--severity=style", "--external-sources", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stdout


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed (scripts/setup.sh installs it)")
def test_shellcheck_is_real(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/sh\nrm -rf $1/*\n")
    res = subprocess.run([str(SHELLCHECK), str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode != 0 and "SC2086" in res.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_scripts_are_executable(script: Path) -> None:
    assert script.stat().st_mode & 0o111, f"{script} is not executable"


def test_builder_usage() -> None:
    builder = REPO / "firmware" / "build-image.sh"
    ok = subprocess.run([str(builder), "--help"], capture_output=True, text=True, timeout=30, check=False)
    assert ok.returncode == 0 and "--profile pi" in ok.stdout
    bad = subprocess.run([str(builder), "--profile", "vax"], capture_output=True, text=True, timeout=30, check=False)
    assert bad.returncode == 2 and "must be pi or test" in bad.stderr
    unknown = subprocess.run([str(builder), "--frob"], capture_output=True, text=True, timeout=30, check=False)
    assert unknown.returncode == 2
