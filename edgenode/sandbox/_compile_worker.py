"""The child side of isolated compilation: module bytes on stdin, precompiled bytes on stdout.

Run as a script (``python -I _compile_worker.py SETTINGS_JSON``), so it imports only the
standard library and wasmtime, never the node. It caps its own address space and CPU time
before compiling; the parent also kills it at the wall-clock limit. Exit codes: 0 compiled,
2 not a valid module (reason on stderr), anything else a crash or a limit.

The parent imports :func:`engine_config` from here, so both sides build the same engine.
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any

import wasmtime as wt

__all__ = ["engine_config", "main", "EXIT_INVALID"]

EXIT_INVALID = 2
"""Exit code for module bytes wasmtime refuses to compile."""


def engine_config(settings: dict[str, Any]) -> wt.Config:
    """The wasmtime config that ``settings`` (from ``Sandbox``'s engine settings) describe."""
    c = wt.Config()
    c.consume_fuel = True
    c.epoch_interruption = True
    c.memory_reservation = int(settings["memory_reservation"])
    c.memory_guard_size = int(settings["memory_guard_size"])
    c.memory_reservation_for_growth = int(settings["memory_reservation_for_growth"])
    c.max_wasm_stack = int(settings["max_wasm_stack"])
    c.cranelift_opt_level = str(settings["cranelift_opt_level"])
    return c


def main(argv: list[str]) -> int:
    settings = json.loads(argv[1])
    module_bytes = sys.stdin.buffer.read()
    cfg = engine_config(settings)
    cfg.parallel_compilation = False  # one core, and no per-thread arenas inside the address-space cap
    engine = wt.Engine(cfg)
    limit = int(settings["compile_memory_bytes"])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    cpu = int(settings["compile_cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    try:
        module = wt.Module(engine, module_bytes)
    except (wt.WasmtimeError, ValueError, TypeError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        sys.stderr.write("; ".join(lines)[:300] or type(exc).__name__)
        return EXIT_INVALID
    sys.stdout.buffer.write(bytes(module.serialize()))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
