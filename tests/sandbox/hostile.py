"""Hostile task modules, made in code (nothing downloaded): sleepers, memory growers, floods, compile bombs."""

from __future__ import annotations

import wasmtime

__all__ = ["sleep_wasm", "grow_wasm", "flood_wasm", "bomb_module", "poll_wasm"]

_PRELUDE = """
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
"""


def poll_wasm(setup: str, nsubs: int = 1) -> bytes:
    """A task that runs ``setup`` (WAT instructions filling subscriptions at address 0), calls
    ``poll_oneoff(0, 1024, nsubs, 2048)`` and exits with the errno, or 50 + the number of events."""
    return bytes(wasmtime.wat2wasm(f"""(module {_PRELUDE}
  (memory (export "memory") 1)
  (func (export "_start") (local $e i32)
    {setup}
    (local.set $e (call $poll (i32.const 0) (i32.const 1024) (i32.const {nsubs}) (i32.const 2048)))
    (if (local.get $e) (then (call $exit (local.get $e))))
    (call $exit (i32.add (i32.const 50) (i32.load (i32.const 2048))))))"""))


def sleep_wasm(ns: int) -> bytes:
    """A task that sleeps ``ns`` nanoseconds (one relative monotonic clock subscription), then exits 51."""
    return poll_wasm(f"(i32.store (i32.const 16) (i32.const 1)) (i64.store (i32.const 24) (i64.const {ns}))")


def grow_wasm(pages: int) -> bytes:
    """A task that grows its memory by ``pages`` (64 KiB each): exit 0 when it got them, exit 1 when refused."""
    return bytes(wasmtime.wat2wasm(f"""(module {_PRELUDE}
  (memory (export "memory") 1)
  (func (export "_start")
    (if (i32.eq (memory.grow (i32.const {pages})) (i32.const -1)) (then (call $exit (i32.const 1))))))"""))


def flood_wasm(nbytes: int) -> bytes:
    """A task that writes ``nbytes`` zero bytes to stdout in one ``fd_write``."""
    pages = nbytes // 65536 + 2
    return bytes(wasmtime.wat2wasm(f"""(module {_PRELUDE}
  (memory (export "memory") {pages})
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 65536))
    (i32.store (i32.const 4) (i32.const {nbytes}))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""))


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _section(section_id: int, payload: bytes) -> bytes:
    return bytes([section_id]) + _leb(len(payload)) + payload


def bomb_module(size: int) -> bytes:
    """A valid module of about ``size`` bytes whose one function makes Cranelift's compile time explode:
    ``k`` live constants, then ``k`` empty loops (each a fuel and epoch check point), then ``k - 1`` adds."""
    k = max(2, (size - 64) // 6)
    body = b"\x00" + b"\x41\x01" * k + b"\x03\x40\x0b" * k + b"\x6a" * (k - 1) + b"\x1a\x0b"
    return (
        b"\0asm\x01\0\0\0"
        + _section(1, b"\x01\x60\x00\x00")
        + _section(3, b"\x01\x00")
        + _section(7, b"\x01\x06_start\x00\x00")
        + _section(10, b"\x01" + _leb(len(body)) + body)
    )
