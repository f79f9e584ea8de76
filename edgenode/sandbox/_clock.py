"""WASI time under the task's deadline: ``poll_oneoff`` and ``clock_time_get`` served by the host.

wasmtime's own ``poll_oneoff`` sleeps on the host side, where neither fuel nor epoch
interruption reach: a task could sleep through its deadline. These two functions shadow
WASI's in the sandbox's linker. A clock subscription sleeps at most until the task's
deadline; past it the task is stopped (status ``deadline``). The monotonic clock the task
sees is the host's, starting near zero at instantiation, so absolute-time subscriptions
agree with ``clock_time_get``.

There are no sockets, pipes or terminals in a task's world (stdin is bytes, stdout and
stderr are captured, ``/data`` holds regular files), so every fd subscription is ready at
once, as wasmtime reports it for those.
"""

from __future__ import annotations

import struct
import time
from typing import Any

import wasmtime as wt

from ._host import HostCtx, current

__all__ = ["WASI_MODULE", "define_wasi_time"]

WASI_MODULE = "wasi_snapshot_preview1"

_ESUCCESS, _EBADF, _EFAULT, _EINVAL = 0, 8, 21, 28
_CLOCK_REALTIME, _CLOCK_MONOTONIC = 0, 1
_CLOCK_CPUTIME = (2, 3)
_EV_CLOCK, _EV_FD_READ, _EV_FD_WRITE = 0, 1, 2
_ABSTIME = 1
_SUB = struct.Struct("<QB")  # userdata, tag (then the union at +16)
_SUB_SIZE = 48
_SUB_CLOCK = struct.Struct("<I4xQQH")  # id, timeout, precision, flags (at +16)
_SUB_FD = struct.Struct("<I")  # fd (at +16)
_EVENT = struct.Struct("<QHB5xQH6x")  # userdata, error, type, nbytes, flags
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_MAX_SUBSCRIPTIONS = 4096


def _memory(caller: Any) -> wt.Memory | None:
    mem = caller.get("memory")
    return mem if isinstance(mem, wt.Memory) else None


def _now_ns(ctx: HostCtx | None, clock_id: int) -> int | None:
    if clock_id == _CLOCK_REALTIME:
        return time.time_ns()
    if clock_id == _CLOCK_MONOTONIC:
        return time.monotonic_ns() - (ctx.origin_ns if ctx is not None else 0)
    return None


def _fits(size: int, ptr: int, length: int) -> bool:
    return ptr >= 0 and ptr + length <= size


def _clock_time_get(caller: Any, clock_id: int, _precision: int, out_ptr: int) -> int:
    ctx = current()
    now = _now_ns(ctx, clock_id)
    if now is None:
        return _EBADF if clock_id in _CLOCK_CPUTIME else _EINVAL  # wasmtime has no CPU-time clocks either
    mem = _memory(caller)
    out_ptr &= 0xFFFFFFFF
    if mem is None or not _fits(mem.data_len(caller), out_ptr, 8):
        return _EFAULT
    mem.write(caller, _U64.pack(now), out_ptr)
    if ctx is not None:
        ctx.past_deadline()
    return _ESUCCESS


def _sleep(ctx: HostCtx, seconds: float) -> None:
    if seconds <= 0:
        return
    if ctx.wake is not None:
        ctx.wake.wait(seconds)
    else:
        time.sleep(seconds)


def _poll_oneoff(caller: Any, in_ptr: int, out_ptr: int, nsubs: int, nevents_ptr: int) -> int:
    ctx = current()
    in_ptr, out_ptr, nevents_ptr, nsubs = (v & 0xFFFFFFFF for v in (in_ptr, out_ptr, nevents_ptr, nsubs))
    if nsubs == 0 or nsubs > _MAX_SUBSCRIPTIONS:
        return _EINVAL
    mem = _memory(caller)
    if mem is None:
        return _EFAULT
    size = mem.data_len(caller)
    if not (_fits(size, in_ptr, nsubs * _SUB_SIZE) and _fits(size, out_ptr, nsubs * _EVENT.size)
            and _fits(size, nevents_ptr, 4)):
        return _EFAULT
    raw = bytes(mem.read(caller, in_ptr, in_ptr + nsubs * _SUB_SIZE))
    ready: list[bytes] = []
    clocks: list[tuple[int, int]] = []  # (ns to wait, userdata)
    for i in range(nsubs):
        base = i * _SUB_SIZE
        userdata, tag = _SUB.unpack_from(raw, base)
        if tag == _EV_CLOCK:
            clock_id, timeout, _precision, flags = _SUB_CLOCK.unpack_from(raw, base + 16)
            now = _now_ns(ctx, clock_id)
            if now is None:
                ready.append(_EVENT.pack(userdata, _EINVAL, _EV_CLOCK, 0, 0))
                continue
            clocks.append((timeout - now if flags & _ABSTIME else timeout, userdata))
        elif tag in (_EV_FD_READ, _EV_FD_WRITE):
            ready.append(_EVENT.pack(userdata, _ESUCCESS, tag, 1, 0))
        else:
            return _EINVAL
    if not ready and clocks:
        wait_ns = max(0, min(w for w, _ in clocks))
        if ctx is None:
            return _EINVAL  # no task on this thread: nothing may sleep
        remaining = ctx.deadline - time.monotonic()
        if wait_ns / 1e9 >= remaining:
            _sleep(ctx, remaining)  # sleep until the deadline, then stop the task there
            ctx.expire()
            mem.write(caller, _U32.pack(0), nevents_ptr)
            return _ESUCCESS
        _sleep(ctx, wait_ns / 1e9)
        if ctx.past_deadline():
            mem.write(caller, _U32.pack(0), nevents_ptr)
            return _ESUCCESS
        ready = [_EVENT.pack(u, _ESUCCESS, _EV_CLOCK, 0, 0) for w, u in clocks if w <= wait_ns]
    if ready:
        mem.write(caller, b"".join(ready), out_ptr)
    mem.write(caller, _U32.pack(len(ready)), nevents_ptr)
    return _ESUCCESS


def define_wasi_time(linker: wt.Linker) -> None:
    """Shadow WASI's ``poll_oneoff`` and ``clock_time_get`` in ``linker`` (after ``define_wasi``)."""
    i32, i64 = wt.ValType.i32(), wt.ValType.i64()
    linker.allow_shadowing = True
    linker.define_func(WASI_MODULE, "poll_oneoff", wt.FuncType([i32, i32, i32, i32], [i32]), _poll_oneoff,
                       access_caller=True)
    linker.define_func(WASI_MODULE, "clock_time_get", wt.FuncType([i32, i64, i32], [i32]), _clock_time_get,
                       access_caller=True)
    linker.allow_shadowing = False
