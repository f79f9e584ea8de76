"""Compiling untrusted modules in a child process under a wall-clock and an address-space limit.

Cranelift's compile time grows faster than linearly with a function's size: one crafted
function can hold a thread for minutes and hundreds of MiB. The child
(:mod:`._compile_worker`) caps its own address space and CPU time; the parent kills it at
the wall-clock limit. What comes back is wasmtime's precompiled form, which the parent
deserializes into its own engine (wasmtime refuses it if the engine settings differ).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..errors import LocalError
from ._compile_worker import EXIT_INVALID
from ._errors import CompileTimeout, InvalidModule

__all__ = ["compile_in_child"]

_WORKER = Path(__file__).resolve().with_name("_compile_worker.py")


def compile_in_child(module_bytes: bytes, settings: dict[str, Any], *, timeout_s: float, memory_mb: int) -> bytes:
    """Precompiled bytes of ``module_bytes``, compiled by a child process.

    Raises ``CompileTimeout`` past ``timeout_s`` (wall clock, the child is killed),
    ``InvalidModule`` for bytes wasmtime refuses or a compile that needs more than
    ``memory_mb`` MiB of address space, ``LocalError`` when no child can be started.
    """
    limits = {"compile_memory_bytes": memory_mb << 20, "compile_cpu_s": max(1, int(timeout_s) + 1)}
    cmd = [sys.executable, "-I", str(_WORKER), json.dumps({**settings, **limits}, sort_keys=True)]
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    try:
        proc = subprocess.run(cmd, input=module_bytes, capture_output=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CompileTimeout(f"compiling took longer than the node's limit of {timeout_s:g} s") from exc
    except OSError as exc:
        raise LocalError(f"cannot start the compiler process: {exc.strerror}") from exc
    if proc.returncode == 0:
        return proc.stdout
    detail = proc.stderr.decode("utf-8", "replace").strip()[:300]
    if proc.returncode == EXIT_INVALID:
        raise InvalidModule(f"not a valid WebAssembly module: {detail}")
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        raise CompileTimeout(f"compiling used more than the node's CPU limit of {limits['compile_cpu_s']} s")
    if proc.returncode == -signal.SIGABRT or "memory" in detail.lower():
        raise InvalidModule(f"compiling needs more than the node's limit of {memory_mb} MiB")
    last = detail.splitlines()[-1] if detail else ""
    raise LocalError(f"the compiler process failed (exit {proc.returncode}): {last}")
