"""Build the example tasks to .wasm: C with Debian's clang for wasm32-wasi, WAT with wasmtime.

    python examples/tasks/build.py [OUT_DIR]      # default: examples/tasks/build/

Needs clang, lld, wasi-libc and libclang-rt-dev-wasm32 (scripts/setup.sh installs them).
Up-to-date outputs are kept. Compiled .wasm files are build outputs, never committed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import wasmtime

__all__ = ["HERE", "C_TASKS", "WAT_TASKS", "build_all", "build_c", "have_clang"]

HERE = Path(__file__).resolve().parent
C_TASKS = ("wordcount", "sha256", "digits", "exitcode", "loop", "membomb", "recurse", "flood", "migrate")
WAT_TASKS = ("hello", "forbidden", "stackbomb", "nostart", "unreachable")
CLANG_FLAGS = ("--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-Wall")


def have_clang() -> bool:
    """True when a clang that can target wasm32-wasi is on PATH."""
    return shutil.which("clang") is not None and Path("/usr/lib/wasm32-wasi/libc.a").exists()


def _stale(out: Path, *sources: Path) -> bool:
    return not out.exists() or any(s.stat().st_mtime > out.stat().st_mtime for s in sources)


def build_all(out_dir: Path, *, c: bool = True) -> dict[str, Path]:
    """Build every example into ``out_dir``; returns name -> .wasm path. C needs clang (``c=False`` skips)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    built: dict[str, Path] = {}
    for name in WAT_TASKS:
        src, out = HERE / f"{name}.wat", out_dir / f"{name}.wasm"
        if _stale(out, src):
            out.write_bytes(wasmtime.wat2wasm(src.read_text()))
        built[name] = out
    if not c:
        return built
    for name in C_TASKS:
        built[name] = build_c(name, out_dir)
    return built


def build_c(name: str, out_dir: Path) -> Path:
    """Build one C example (``migrate``...) into ``out_dir`` unless up to date; its .wasm path. Needs clang."""
    out_dir.mkdir(parents=True, exist_ok=True)
    src, out = HERE / f"{name}.c", out_dir / f"{name}.wasm"
    if _stale(out, src, HERE / "include" / "edgenode.h"):
        tmp = out.with_suffix(".part")
        cmd = ["clang", *CLANG_FLAGS, f"-I{HERE / 'include'}", "-o", str(tmp), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"clang failed for {src.name}:\n{proc.stderr}")
        tmp.replace(out)
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "build"
    for task, path in build_all(target, c=have_clang()).items():
        print(f"{task:12s} {path}")
