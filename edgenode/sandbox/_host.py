"""The ``edgenode`` host module: imports a task may use to call ONNX models.

ABI (see docs/task-abi.md and examples/tasks/include/edgenode.h)::

    (import "edgenode" "model_count" (func (result i32)))
    (import "edgenode" "infer" (func (param i32 i32 i32 i32 i32) (result i32)))
    ;; infer(slot, in_ptr, in_len, out_ptr, out_cap) -> bytes written, or a negative error
    (import "edgenode" "safepoint" (func (param i32 i32) (result i32)))
    ;; safepoint(unwind_buf, len) -> 0, or 1 just after a resume (see _checkpoint.py)

``slot`` indexes ``TaskIO.models``: a task can only reach the models its spec names.
"""

from __future__ import annotations

import ctypes
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import wasmtime as wt

from ..errors import EdgenodeError
from ..inference import InferenceInputError, UnknownModel
from ._types import HostModels

__all__ = [
    "HOST_MODULE",
    "HOST_FUNCS",
    "ERR_NO_MODEL",
    "ERR_INPUT",
    "ERR_OUTPUT_TOO_SMALL",
    "ERR_FAILED",
    "ERR_BOUNDS",
    "HostCtx",
    "define_host",
    "set_countdown",
    "SAFEPOINT_RESERVED",
    "COUNTDOWN_NEVER",
    "current",
]

HOST_MODULE = "edgenode"
"""Import module name of the host API."""
ERR_NO_MODEL = -1
"""The slot is not granted by the task's spec (or no model registry is attached)."""
ERR_INPUT = -2
"""The input bytes do not fit the model's input signature."""
ERR_OUTPUT_TOO_SMALL = -3
"""The output buffer is smaller than the model's output; nothing was written."""
ERR_FAILED = -4
"""The model failed to run."""
ERR_BOUNDS = -5
"""A pointer/length pair lies outside the task's linear memory."""


@dataclass
class HostCtx:
    """Per-run state the host functions need; set for the thread that runs the task."""

    models: tuple[str, ...]
    registry: HostModels | None
    calls: int = 0
    memory: wt.Memory | None = None
    """The task's exported memory, looked up on the first call (a name lookup costs microseconds)."""
    deadline: float = math.inf
    """``time.monotonic()`` instant the task must end by; host calls check it (WASI sleeps stop there)."""
    origin_ns: int = field(default_factory=time.monotonic_ns)
    """Zero of the task's monotonic clock."""
    wake: threading.Event | None = None
    """Set when the sandbox closes: cuts host-side sleeps short."""
    on_deadline: Callable[[], None] | None = None
    """Stops the task (drains its fuel) once its deadline passed inside a host call."""
    deadline_hit: bool = False
    """The deadline passed while the task was in a host call."""
    safepoint: Callable[[Any, int, int], int] | None = None
    """The run's safe-point hook (a checkpointable run); ``None``: safe points return 0 at once."""
    stdin: bytes | None = None
    """stdin of a checkpointable run, served by the host's ``fd_read`` (``None``: WASI's own)."""
    stdin_offset: int = 0
    """Bytes of ``stdin`` the task has read."""

    def expire(self) -> None:
        """Mark the deadline as passed and stop the task (once)."""
        if not self.deadline_hit:
            self.deadline_hit = True
            if self.on_deadline is not None:
                self.on_deadline()

    def past_deadline(self) -> bool:
        """True (and the task is stopped) when the deadline has passed."""
        if self.deadline_hit:
            return True
        if time.monotonic() >= self.deadline:
            self.expire()
            return True
        return False


_state = threading.local()


def current() -> HostCtx | None:
    """The context of the task running on this thread, if any."""
    ctx: HostCtx | None = getattr(_state, "ctx", None)
    return ctx


def set_current(ctx: HostCtx | None) -> None:
    _state.ctx = ctx


def _memory(caller: Any) -> wt.Memory | None:
    mem = caller.get("memory")
    return mem if isinstance(mem, wt.Memory) else None


def _model_count(caller: Any) -> int:
    ctx = current()
    return len(ctx.models) if ctx is not None else 0


def _infer(caller: Any, slot: int, in_ptr: int, in_len: int, out_ptr: int, out_cap: int) -> int:
    ctx = current()
    if ctx is None or ctx.registry is None or not 0 <= slot < len(ctx.models):
        return ERR_NO_MODEL
    if ctx.past_deadline():
        return ERR_FAILED
    mem = ctx.memory
    if mem is None:
        mem = ctx.memory = _memory(caller)
    if mem is None:
        return ERR_BOUNDS
    size = mem.data_len(caller)
    in_ptr &= 0xFFFFFFFF
    out_ptr &= 0xFFFFFFFF
    if in_len < 0 or out_cap < 0 or in_ptr + in_len > size or out_ptr + out_cap > size:
        return ERR_BOUNDS
    ctx.calls += 1
    base = ctypes.addressof(mem.data_ptr(caller).contents)
    data = ctypes.string_at(base + in_ptr, in_len)  # bounds checked above
    try:
        out = ctx.registry.infer_raw(ctx.models[slot], data)
    except UnknownModel:
        return ERR_NO_MODEL
    except InferenceInputError:
        return ERR_INPUT
    except EdgenodeError:
        return ERR_FAILED
    if ctx.past_deadline():
        return ERR_FAILED  # the model ran past the task's deadline: the task stops on return
    if len(out) > out_cap:
        return ERR_OUTPUT_TOO_SMALL
    if out:
        # The model may not grow memory, but re-read the base: nothing else ran, this is just cheap safety.
        base = ctypes.addressof(mem.data_ptr(caller).contents)
        ctypes.memmove(base + out_ptr, out, len(out))
    return len(out)


SAFEPOINT_RESERVED = 16
"""Bytes at the start of a safe point's buffer that the host owns: the Asyncify data header
(``[0, 8)``: current and end pointers) and the countdown (``[8, 12)``: safe points the task
passes without calling the host; the header's ``edge_safepoint`` decrements it)."""
COUNTDOWN_NEVER = 1 << 30
"""The countdown of a run that takes no checkpoints: the task stops calling the host."""


def set_countdown(caller: Any, buf: int, length: int, value: int) -> bool:
    """Write a safe point's countdown into its buffer; False when the buffer is not in memory."""
    mem = _memory(caller)
    buf &= 0xFFFFFFFF
    if mem is None or length < 4 * SAFEPOINT_RESERVED or buf % 4 or buf + length > mem.data_len(caller):
        return False
    mem.write(caller, value.to_bytes(4, "little"), buf + 8)
    return True


def _safepoint(caller: Any, buf: int, length: int) -> int:
    ctx = current()
    hook = ctx.safepoint if ctx is not None else None
    if hook is None:
        set_countdown(caller, buf, length, COUNTDOWN_NEVER)  # no checkpoints in this run: stop calling
        return 0
    return hook(caller, buf, length)


HOST_FUNCS: dict[str, tuple[int, Callable[..., int]]] = {
    "model_count": (0, _model_count),
    "infer": (5, _infer),
    "safepoint": (2, _safepoint),
}
"""Name -> (number of i32 params, implementation) of every host function; each returns one i32."""


def define_host(linker: wt.Linker) -> None:
    """Define the ``edgenode`` host module in ``linker``.

    Function types are made here, per linker: wasmtime binds a type to the engine that first uses it.
    """
    for name, (params, fn) in HOST_FUNCS.items():
        ty = wt.FuncType([wt.ValType.i32() for _ in range(params)], [wt.ValType.i32()])
        linker.define_func(HOST_MODULE, name, ty, fn, access_caller=True)
