"""WASI set-up with no ambient authority: stdin from bytes, capped captured output."""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Callable

import wasmtime as wt
from wasmtime import _ffi as ffi

from ._types import TaskIO

__all__ = ["OutputSink", "make_wasi"]

GUEST_DIR = "/data"
"""Where a task sees its read-only directory."""


class OutputSink:
    """stdout and stderr of one task, capped together at ``cap`` bytes.

    Past the cap it keeps the bytes that fit, sets ``over`` and calls ``on_over`` once
    (the sandbox drains the task's fuel there, so a flood stops at once).
    """

    def __init__(self, cap: int, on_over: Callable[[], None]) -> None:
        self.cap = cap
        self.total = 0
        self.over = False
        self.stdout: list[bytes] = []
        self.stderr: list[bytes] = []
        self._on_over = on_over

    def detach(self) -> None:
        """Forget ``on_over`` (the run is over: nothing left to stop)."""
        self._on_over = _nothing

    def _write(self, into: list[bytes], data: bytes) -> int | None:
        if self.over:
            return -errno.EFBIG
        room = self.cap - self.total
        if len(data) <= room:
            into.append(bytes(data))
            self.total += len(data)
            return None
        into.append(bytes(data[:room]))
        self.total = self.cap
        self.over = True
        self._on_over()
        return -errno.EFBIG

    def out(self, data: bytes) -> int | None:
        return self._write(self.stdout, data)

    def err(self, data: bytes) -> int | None:
        return self._write(self.stderr, data)


def _stdin_bytes(wasi: wt.WasiConfig, data: bytes) -> None:
    # WasiConfig has no stdin-from-bytes in wasmtime-py 50; the C API does.
    vec = ffi.wasm_byte_vec_t()
    buf = (ffi.wasm_byte_t * len(data)).from_buffer_copy(data)
    ffi.wasm_byte_vec_new(ctypes.byref(vec), len(data), buf)  # copied; ownership moves to the config
    ffi.wasi_config_set_stdin_bytes(wasi.ptr(), ctypes.byref(vec))


def make_wasi(io: TaskIO, sink: OutputSink) -> wt.WasiConfig:
    """A WASI config that grants exactly what ``io`` names and nothing else."""
    wasi = wt.WasiConfig()
    wasi.argv = ["task", *io.args]
    wasi.env = sorted(io.env.items())
    if io.stdin:
        _stdin_bytes(wasi, io.stdin)
    wasi.stdout_custom = sink.out
    wasi.stderr_custom = sink.err
    if io.readonly_dir is not None:
        wasi.preopen_dir(str(io.readonly_dir), GUEST_DIR, fs_mutable=False)
    return wasi


def _nothing() -> None:
    return None
