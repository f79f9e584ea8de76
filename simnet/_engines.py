"""The workload's tasks and the per-node views of the shared sandbox and model registry.

A simulated swarm shares ONE real :class:`edgenode.sandbox.Sandbox` (wasmtime)
and ONE real :class:`edgenode.inference.ModelRegistry` (onnxruntime) among its
nodes: both are thread-safe, and a thousand wasmtime engines with their epoch
threads would not fit one machine.  Each node sees them through a small view
that keeps what the node itself holds (modules it fetched, models of its
profile) and scales run time by the profile's ``speed`` (a slower board holds
its slot longer).  Tasks still really run: outputs are real and verified.  A view
prepares runs too (tasks with safe points: checkpoints, resumes, and what a kill
does to them, :mod:`simnet._migrate`).
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import wasmtime

from edgenode.errors import LocalError
from edgenode.inference import ModelRegistry
from edgenode.protocol import KIND_INFER, KIND_WASM
from edgenode.sandbox import Checkpointing, Limits, RunResult, Sandbox, SandboxConfig, Snapshot, TaskIO

from ._migrate import KillSwitch, SwitchedRun, migrate_input, migrate_module

__all__ = [
    "ECHO_WAT",
    "SPIN_WAT",
    "SharedEngines",
    "NodeWasm",
    "NodeInfer",
    "TaskShape",
    "task_shape",
    "expected_output",
]

ECHO_WAT = """
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $n i32)
    (block $done
      (loop $more
        (i32.store (i32.const 0) (i32.const 1024))
        (i32.store (i32.const 4) (i32.const 4096))
        (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store (i32.const 4) (local.get $n))
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        (br $more)))))
"""
"""``echo``: copies stdin to stdout."""

SPIN_ROUNDS = 200_000
SPIN_WAT = f"""
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $x i32) (local $i i32)
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 4))
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (local.set $x (i32.load (i32.const 1024)))
    (local.set $i (i32.const {SPIN_ROUNDS}))
    (loop $l
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1664525)) (i32.const 1013904223)))
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br_if $l (local.get $i)))
    (i32.store (i32.const 1024) (local.get $x))
    (i32.store (i32.const 4) (i32.const 4))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""
"""``spin``: a compute loop (an LCG run {SPIN_ROUNDS} times from the 4-byte little-endian seed on stdin)."""


@cache
def _module(which: str) -> bytes:
    wat = {"echo": ECHO_WAT, "spin": SPIN_WAT}[which]
    data = bytes(wasmtime.wat2wasm(wat))
    return data


@cache
def _digits() -> tuple[bytes, np.ndarray]:
    """The digits ONNX model (trained on the bundled data set) and the images to classify."""
    from edgenode.inference.digits import digits_dataset, export_mlp_onnx, train_digits_weights

    x, _y = digits_dataset()
    return export_mlp_onnx(train_digits_weights(seed=0), name="digits"), x


@dataclass(frozen=True)
class TaskShape:
    """What the submitter sends for one task of the mix."""

    kind: str
    """``wasm`` or ``infer``."""
    module: bytes
    """WASM module bytes (empty for ``infer``)."""
    module_hash: str
    """sha256 hex of the module, or the model hash."""
    input: bytes


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def task_shape(task: str, payload: int, rounds: int = 0) -> TaskShape:
    """The module and input of a task of kind ``task`` (``echo``, ``spin``, ``infer``, ``migrate`` of
    ``rounds`` rounds) for ``payload``."""
    if task == "migrate":
        mod = migrate_module()
        return TaskShape(KIND_WASM, mod, hashlib.sha256(mod).hexdigest(), migrate_input(payload, rounds))
    if task in ("echo", "spin"):
        mod = _module(task)
        data = payload.to_bytes(4, "little") if task == "spin" else f"task {payload}\n".encode()
        return TaskShape(KIND_WASM, mod, hashlib.sha256(mod).hexdigest(), data)
    if task == "infer":
        model, x = _digits()
        row = x[payload % len(x)][None, :]
        return TaskShape(KIND_INFER, b"", hashlib.sha256(model).hexdigest(), _npy(row))
    raise LocalError(f"unknown task {task!r}")


def _lcg_jump(x: int, n: int, a: int = 1664525, c: int = 1013904223) -> int:
    """``x`` after ``n`` steps of ``x -> a*x + c (mod 2**32)``, by squaring the affine map."""
    m = 0xFFFFFFFF
    ra, rc = 1, 0  # the identity map
    while n:
        if n & 1:
            ra, rc = (a * ra) & m, (a * rc + c) & m
        a, c = (a * a) & m, (a * c + c) & m
        n >>= 1
    return (ra * x + rc) & m


def expected_output(task: str, payload: int) -> bytes | None:
    """The output a correct executor returns (None where it depends on the model's floats, and for
    ``migrate``: an uninterrupted run's output, checked at the end of the run for the tasks that moved)."""
    if task == "echo":
        return f"task {payload}\n".encode()
    if task == "spin":
        return _lcg_jump(payload & 0xFFFFFFFF, SPIN_ROUNDS).to_bytes(4, "little")
    return None


class SharedEngines:
    """One real sandbox and one real model registry for all the nodes of a process."""

    def __init__(self, workdir: Path, *, models: bool = True) -> None:
        """``models``: load the digits model (onnxruntime) for ``infer`` tasks; without it no
        node serves a model.  Make this on the main thread (wasmtime's engine)."""
        self.sandbox = Sandbox(SandboxConfig(max_instances=64, max_fuel=1 << 40))  # migrate tasks: ~2e7 a round
        self.registry: ModelRegistry | None = None
        self.digits_hash = ""
        if models:
            self.registry = ModelRegistry(Path(workdir) / "models", providers=["CPUExecutionProvider"])
            self.digits_hash = self.registry.add(_digits()[0])

    def close(self) -> None:
        self.sandbox.close()


def _slow_down(wall_ms: float, speed: float) -> None:
    extra = wall_ms * (1.0 / speed - 1.0)
    if extra > 0:
        time.sleep(min(extra, 2000.0) / 1000.0)


class NodeWasm:
    """One node's view of the shared sandbox (the executor's ``WasmEngine`` port)."""

    def __init__(self, shared: SharedEngines, speed: float) -> None:
        self._shared = shared
        self._speed = speed
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self.switch = KillSwitch()
        """What killing this node does to its runs of tasks with safe points (memnet kills)."""

    def has_module(self, module_hash: str) -> bool:
        with self._lock:
            return module_hash in self._held

    def compile(self, module: bytes) -> str:
        h = self._shared.sandbox.compile(module)
        with self._lock:
            self._held.add(h)
        return h

    def run(self, module_hash: str, io: TaskIO, limits: Limits) -> RunResult:
        res = self._shared.sandbox.run(module_hash, io, limits)
        _slow_down(res.wall_ms, self._speed)
        return res

    def prepare(
        self,
        module_hash: str,
        io: TaskIO,
        limits: Limits,
        *,
        checkpointing: Checkpointing | None = None,
        resume: Sequence[Snapshot] = (),
    ) -> SwitchedRun:
        """A run the executor starts once (checkpoints, resumes; what a kill does, :mod:`simnet._migrate`)."""
        policy = self.switch.guard(checkpointing)
        run = self._shared.sandbox.prepare(module_hash, io, limits, checkpointing=policy, resume=resume)
        return self.switch.wrap(run, checkpointing, resume, lambda res: _slow_down(res.wall_ms, self._speed))

    def open_snapshot(self, data: bytes, *, trusted: set[bytes] | None = None) -> Snapshot:
        return self._shared.sandbox.open_snapshot(data, trusted=trusted)


class NodeInfer:
    """One node's view of the shared model registry (the executor's ``InferEngine`` port)."""

    def __init__(self, shared: SharedEngines, models: list[str], providers: list[str], speed: float) -> None:
        self._shared = shared
        self._models = models
        self._providers = providers
        self._speed = speed

    def models(self) -> list[str]:
        return list(self._models)

    def providers(self) -> list[str]:
        return list(self._providers)

    def infer(self, model_hash: str, npy: bytes) -> bytes:
        if model_hash not in self._models:
            raise LocalError(f"model {model_hash[:12]} is not served here")
        t0 = time.perf_counter()
        arr = np.load(io.BytesIO(npy), allow_pickle=False)
        reg = self._shared.registry
        if reg is None:
            raise LocalError("no models are loaded in this swarm")
        out = reg.run(model_hash, {"x": np.asarray(arr, np.float32)})
        res = _npy(next(iter(out.values())))
        _slow_down((time.perf_counter() - t0) * 1000.0, self._speed)
        return res
