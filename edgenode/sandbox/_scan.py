"""A cheap pre-compile scan of a WebAssembly binary: its section layout and its largest function body.

Pure (no wasmtime): the sandbox runs it before compiling, so a module whose one function is
big enough to make the compiler run for minutes is refused in microseconds. It walks the
section headers and the code section's body sizes only; full validation is wasmtime's job.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._errors import InvalidModule

__all__ = ["ModuleShape", "scan_module"]

_MAGIC = b"\0asm"
_CODE_SECTION = 10


@dataclass(frozen=True)
class ModuleShape:
    """What the scan found."""

    functions: int
    """Function bodies in the code section."""
    largest_body: int
    """Bytes of the largest function body (0 without a code section)."""


def _leb_u32(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """An unsigned LEB128 of at most 5 bytes at ``pos``; returns (value, next position)."""
    value = shift = 0
    for i in range(5):
        if pos + i >= end:
            raise InvalidModule("truncated WebAssembly binary (LEB128 runs past its section)")
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if value > 0xFFFFFFFF:
                raise InvalidModule("malformed WebAssembly binary (LEB128 over 32 bits)")
            return value, pos + i + 1
        shift += 7
    raise InvalidModule("malformed WebAssembly binary (LEB128 longer than 5 bytes)")


def scan_module(data: bytes) -> ModuleShape:
    """The shape of a WebAssembly binary; ``InvalidModule`` when its section layout is malformed."""
    if len(data) < 8 or not data.startswith(_MAGIC):
        raise InvalidModule("not a WebAssembly binary (no \\0asm magic)")
    pos, end = 8, len(data)
    functions = largest = 0
    while pos < end:
        section_id = data[pos]
        size, body = _leb_u32(data, pos + 1, end)
        section_end = body + size
        if section_end > end:
            raise InvalidModule(f"truncated WebAssembly binary (section {section_id} runs past the end)")
        if section_id == _CODE_SECTION:
            count, p = _leb_u32(data, body, section_end)
            for _ in range(count):
                n, p = _leb_u32(data, p, section_end)
                p += n
                if p > section_end:
                    raise InvalidModule("truncated WebAssembly binary (a function body runs past its section)")
                largest = max(largest, n)
            functions += count
        pos = section_end
    return ModuleShape(functions, largest)
