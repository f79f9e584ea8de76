"""``edgenode exec``: run one WASM task locally under the sandbox's limits."""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..errors import LocalError
from ..inference import MODELS_DIR, ModelRegistry
from ..sandbox import InvalidModule, Limits, RunResult, Sandbox, SandboxConfig, Status, TaskIO
from ._common import EXIT_ERROR, EXIT_OK, EXIT_TASK_FAILED, fail, print_json

__all__ = ["register", "result_json"]


def register(sub: Any) -> None:
    d = SandboxConfig()
    p = sub.add_parser("exec", help="run a WASM task (WASI command) locally in the sandbox")
    p.add_argument("module", type=Path, metavar="MODULE.wasm", help="the task module")
    p.add_argument("--stdin", type=Path, metavar="FILE", help="file whose bytes the task reads on stdin")
    p.add_argument("--arg", action="append", default=[], metavar="A", help="a task argument (repeatable)")
    p.add_argument("--env", action="append", default=[], metavar="K=V", help="an environment variable (repeatable)")
    p.add_argument("--dir", type=Path, metavar="DIR", help="grant DIR read-only as /data")
    p.add_argument("--fuel", type=int, default=d.fuel, metavar="N", help=f"fuel limit (default {d.fuel})")
    p.add_argument("--timeout-ms", type=int, default=d.timeout_ms, metavar="N", help="wall-clock deadline")
    p.add_argument("--memory-mb", type=int, default=d.memory_mb, metavar="N", help="linear memory cap in MiB")
    p.add_argument("--max-output", type=int, default=d.max_output_bytes, metavar="BYTES", help="output cap")
    p.add_argument(
        "--model", action="append", default=[], metavar="FILE.onnx", help="grant a model; slot = order given"
    )
    p.add_argument("--home", type=Path, help="node home: reuse its model registry and module cache")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_exec)


def result_json(r: RunResult) -> dict[str, Any]:
    """The JSON form of a result: stdout/stderr as text when UTF-8, else base64 with a flag."""
    out: dict[str, Any] = {
        "status": r.status.value,
        "exit_code": r.exit_code,
        "fuel_used": r.fuel_used,
        "wall_ms": round(r.wall_ms, 3),
        "trap": r.trap,
        "module_hash": r.module_hash,
    }
    for name, data in (("stdout", r.stdout), ("stderr", r.stderr)):
        try:
            out[name] = data.decode("utf-8")
            out[f"{name}_base64"] = False
        except UnicodeDecodeError:
            out[name] = base64.b64encode(data).decode("ascii")
            out[f"{name}_base64"] = True
    return out


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LocalError(f"cannot read {what} {path}: {exc.strerror}") from exc


def cmd_exec(args: argparse.Namespace) -> int:
    module = _read(args.module, "module")
    stdin = _read(args.stdin, "stdin file") if args.stdin is not None else b""
    env: dict[str, str] = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LocalError(f"--env wants K=V, got {item!r}")
        env[key] = value
    if args.dir is not None and not args.dir.is_dir():
        raise LocalError(f"--dir {args.dir} is not a directory")
    try:
        limits = Limits(
            fuel=args.fuel, timeout_ms=args.timeout_ms, memory_mb=args.memory_mb, max_output_bytes=args.max_output
        )
    except ValueError as exc:
        raise LocalError(str(exc)) from exc
    with tempfile.TemporaryDirectory(prefix="edgenode-exec-") as tmp:
        home = args.home.expanduser() if args.home is not None else None
        models_dir = home / MODELS_DIR if home is not None else Path(tmp) / MODELS_DIR
        registry = ModelRegistry(models_dir) if args.model else None
        hashes: list[str] = []
        for path in args.model:
            if registry is not None:
                hashes.append(registry.add(Path(path)))
        cache = home / "cache" / "wasm" if home is not None else None
        with Sandbox(SandboxConfig(cache_dir=cache), models=registry) as sandbox:
            try:
                module_hash = sandbox.compile(module)
            except InvalidModule as exc:
                return fail(f"invalid module {args.module}: {exc}", EXIT_ERROR)
            io = TaskIO(stdin=stdin, args=tuple(args.arg), env=env, readonly_dir=args.dir, models=tuple(hashes))
            result = sandbox.run(module_hash, io, limits)
    if args.json:
        print_json(result_json(result))
    else:
        sys.stdout.buffer.write(result.stdout)
        sys.stdout.flush()
        sys.stderr.buffer.write(result.stderr)
        sys.stderr.flush()
    if result.status is Status.INVALID_MODULE:
        return fail(f"invalid module {args.module}: {result.trap}", EXIT_ERROR)
    if result.status is not Status.OK:
        if not args.json:
            detail = f"exit code {result.exit_code}" if result.status is Status.EXIT else (result.trap or "")
            fail(f"task ended with status {result.status.value} ({detail})", EXIT_TASK_FAILED)
        return EXIT_TASK_FAILED
    return EXIT_OK
