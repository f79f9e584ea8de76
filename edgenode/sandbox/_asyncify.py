"""The Asyncify rewrite of a task that imports the safe point: binaryen's ``wasm-opt`` plus global exports.

A module that imports ``edgenode.safepoint`` is rewritten before it is compiled:

1. every mutable global it defines gets an export (``__edgenode_global_<index>``) so the
   host can read and restore it (``__stack_pointer`` is one; wasm-ld never exports it);
2. ``wasm-opt --asyncify`` restricted to that one import (``asyncify-imports``) turns the
   call stack at a safe point into data in the task's own linear memory, and adds the
   ``asyncify_*`` exports the host drives.

The rewrite is deterministic for one binaryen version; a snapshot names the sha256 of the
rewritten bytes (its ``code_hash``) so it only resumes on the same code. Pure bytes in,
bytes out, plus one child process (``wasm-opt``) under a wall-clock limit.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import LocalError
from ._errors import CompileTimeout, InvalidModule
from ._scan import _leb_u32

__all__ = [
    "SAFEPOINT",
    "GLOBAL_EXPORT_PREFIX",
    "ASYNCIFY_EXPORTS",
    "Rewritten",
    "imports_safepoint",
    "export_mutable_globals",
    "asyncify",
    "have_wasm_opt",
]

SAFEPOINT = ("edgenode", "safepoint")
"""The import (module, name) that marks a task as checkpointable."""
GLOBAL_EXPORT_PREFIX = "__edgenode_global_"
"""Prefix of the exports the rewrite adds for mutable globals (the global's index follows)."""
ASYNCIFY_EXPORTS = ("asyncify_start_unwind", "asyncify_stop_unwind", "asyncify_start_rewind", "asyncify_stop_rewind")
"""Exports ``wasm-opt --asyncify`` adds and the host calls."""

_MAGIC = b"\0asm\x01\0\0\0"
_IMPORT, _GLOBAL, _EXPORT = 2, 6, 7
_KIND_FUNC, _KIND_TABLE, _KIND_MEMORY, _KIND_GLOBAL = 0, 1, 2, 3
_END = 0x0B


@dataclass(frozen=True)
class Rewritten:
    """A module after the rewrite."""

    wasm: bytes
    """The rewritten module bytes (what the sandbox compiles)."""
    code_hash: str
    """sha256 hex of ``wasm``: snapshots name it, so they resume only on identical code."""


def have_wasm_opt() -> bool:
    """True when binaryen's ``wasm-opt`` is on PATH (``scripts/setup.sh`` installs Debian's ``binaryen``)."""
    return shutil.which("wasm-opt") is not None


def _leb_encode(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _name(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    n, pos = _leb_u32(data, pos, end)
    if pos + n > end:
        raise InvalidModule("truncated WebAssembly binary (a name runs past its section)")
    return data[pos:pos + n], pos + n


def _sections(data: bytes) -> list[tuple[int, int, int]]:
    """(id, body start, body end) of every section."""
    if not data.startswith(_MAGIC):
        raise InvalidModule("not a WebAssembly 1.0 binary")
    out: list[tuple[int, int, int]] = []
    pos, end = len(_MAGIC), len(data)
    while pos < end:
        sid = data[pos]
        size, body = _leb_u32(data, pos + 1, end)
        if body + size > end:
            raise InvalidModule(f"truncated WebAssembly binary (section {sid} runs past the end)")
        out.append((sid, body, body + size))
        pos = body + size
    return out


def imports_safepoint(data: bytes) -> bool:
    """True when the module imports ``edgenode.safepoint`` (its import section is read, nothing else)."""
    for sid, body, end in _sections(data):
        if sid != _IMPORT:
            continue
        count, pos = _leb_u32(data, body, end)
        for _ in range(count):
            mod, pos = _name(data, pos, end)
            name, pos = _name(data, pos, end)
            if (mod.decode("utf-8", "replace"), name.decode("utf-8", "replace")) == SAFEPOINT:
                return True
            pos = _skip_import_desc(data, pos, end)
    return False


def _skip_limits(data: bytes, pos: int, end: int) -> int:
    if pos >= end:
        raise InvalidModule("truncated WebAssembly binary (limits)")
    flags = data[pos]
    _, pos = _leb_u32(data, pos + 1, end)
    if flags & 1:
        _, pos = _leb_u32(data, pos, end)
    return pos


def _skip_import_desc(data: bytes, pos: int, end: int) -> int:
    if pos >= end:
        raise InvalidModule("truncated WebAssembly binary (import)")
    kind = data[pos]
    pos += 1
    if kind == _KIND_FUNC:
        _, pos = _leb_u32(data, pos, end)
        return pos
    if kind == _KIND_TABLE:
        return _skip_limits(data, pos + 1, end)
    if kind == _KIND_MEMORY:
        return _skip_limits(data, pos, end)
    if kind == _KIND_GLOBAL:
        return pos + 2
    raise InvalidModule(f"unknown import kind {kind}")


def _skip_const_expr(data: bytes, pos: int, end: int) -> int:
    """Skip a constant expression (MVP plus extended-const), through its ``end``."""
    while pos < end:
        op = data[pos]
        pos += 1
        if op == _END:
            return pos
        if op in (0x41, 0x42, 0x23, 0xD2):  # i32.const, i64.const, global.get, ref.func
            pos = _skip_sleb(data, pos, end)
        elif op == 0x43:  # f32.const
            pos += 4
        elif op == 0x44:  # f64.const
            pos += 8
        elif op == 0xD0:  # ref.null t
            pos += 1
        elif op in (0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E):  # extended-const add/sub/mul
            continue
        else:
            raise InvalidModule(f"unsupported opcode 0x{op:02x} in a global's initialiser")
    raise InvalidModule("truncated WebAssembly binary (a global's initialiser)")


def _skip_sleb(data: bytes, pos: int, end: int) -> int:
    for i in range(10):
        if pos + i >= end:
            break
        if not data[pos + i] & 0x80:
            return pos + i + 1
    raise InvalidModule("malformed WebAssembly binary (LEB128)")


def export_mutable_globals(data: bytes) -> bytes:
    """``data`` with an export ``__edgenode_global_<i>`` for each mutable global it defines."""
    sections = _sections(data)
    imported = 0
    mutable: list[int] = []
    exports_at: tuple[int, int, int] | None = None
    taken: set[bytes] = set()
    for sid, body, end in sections:
        if sid == _IMPORT:
            count, pos = _leb_u32(data, body, end)
            for _ in range(count):
                _, pos = _name(data, pos, end)
                _, pos = _name(data, pos, end)
                if data[pos] == _KIND_GLOBAL:
                    imported += 1
                pos = _skip_import_desc(data, pos, end)
        elif sid == _GLOBAL:
            count, pos = _leb_u32(data, body, end)
            for i in range(count):
                if pos + 2 > end:
                    raise InvalidModule("truncated WebAssembly binary (global)")
                valtype, mut = data[pos], data[pos + 1]
                if valtype not in (0x7F, 0x7E, 0x7D, 0x7C):
                    raise InvalidModule("a task's globals must be numbers (i32, i64, f32, f64)")
                if mut == 1:
                    mutable.append(imported + i)
                pos = _skip_const_expr(data, pos + 2, end)
        elif sid == _EXPORT:
            exports_at = (sid, body, end)
            count, pos = _leb_u32(data, body, end)
            for _ in range(count):
                name, pos = _name(data, pos, end)
                taken.add(name)
                _, pos = _leb_u32(data, pos + 1, end)
    entries = b""
    added = 0
    for index in mutable:
        name = f"{GLOBAL_EXPORT_PREFIX}{index}".encode()
        if name in taken:
            raise InvalidModule(f"the module already exports {name.decode()}")
        entries += _leb_encode(len(name)) + name + bytes([_KIND_GLOBAL]) + _leb_encode(index)
        added += 1
    if not added:
        return data
    if exports_at is not None:
        _, body, end = exports_at
        count, first = _leb_u32(data, body, end)
        new_body = _leb_encode(count + added) + data[first:end] + entries
        start = body - len(_leb_encode(end - body)) - 1
        return data[:start] + bytes([_EXPORT]) + _leb_encode(len(new_body)) + new_body + data[end:]
    # No export section: put one after the last section whose id is below 7 (custom sections aside).
    new_body = _leb_encode(added) + entries
    section = bytes([_EXPORT]) + _leb_encode(len(new_body)) + new_body
    at = len(_MAGIC)
    for sid, _, end in sections:
        if sid != 0 and sid < _EXPORT:
            at = end
    return data[:at] + section + data[at:]


def asyncify(data: bytes, *, timeout_s: float) -> Rewritten:
    """The checkpointable form of a module that imports the safe point.

    Raises ``InvalidModule`` for bytes binaryen refuses, ``CompileTimeout`` past
    ``timeout_s``, ``LocalError`` when ``wasm-opt`` is not installed.
    """
    exe = shutil.which("wasm-opt")
    if exe is None:
        raise LocalError("checkpointable tasks need binaryen's wasm-opt (Debian package binaryen)")
    staged = export_mutable_globals(data)
    with tempfile.TemporaryDirectory(prefix="edgenode-asyncify-") as tmp:
        src, dst = Path(tmp) / "in.wasm", Path(tmp) / "out.wasm"
        src.write_bytes(staged)
        cmd = [
            exe, str(src), "-o", str(dst), "--asyncify", "-O1",
            f"--pass-arg=asyncify-imports@{SAFEPOINT[0]}.{SAFEPOINT[1]}",
            "--enable-bulk-memory", "--enable-sign-ext", "--enable-mutable-globals",
            "--enable-nontrapping-float-to-int",
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise CompileTimeout(f"the Asyncify rewrite took longer than the node's limit of {timeout_s:g} s") from exc
        except OSError as exc:
            raise LocalError(f"cannot start wasm-opt: {exc.strerror}") from exc
        if proc.returncode != 0:
            detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise InvalidModule(f"the Asyncify rewrite failed: {detail[-1][:200] if detail else proc.returncode}")
        out = dst.read_bytes()
    return Rewritten(out, hashlib.sha256(out).hexdigest())
