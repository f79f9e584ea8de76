"""Snapshots of a checkpointed task: the format, its signature, and memory images (pure: no wasmtime).

A snapshot is everything a node needs to resume a task that unwound at a safe point::

    b"ENSNAP\\0\\1" | u32 header length | header | u64 pages length | pages | Ed25519 signature (64)

all little-endian. The header is a canonical ``edgenode.wire`` map (module and rewritten-code
hashes, memory size, the pages present, mutable globals as raw little-endian bytes, the
Asyncify data address, fuel used, WASI state, limits, the spec bytes, the author's key); the
pages are the task's 64 KiB linear-memory pages that are present, each zlib-compressed
(or raw where that does not pay). A *full* snapshot holds every page that is not zero; a
*delta* names its ``base`` snapshot and holds only the pages that changed since. The
signature (by the node that took it, domain-separated) is over the sha256 of every byte before
it (Ed25519 would hash a 16 MiB message twice more); the
snapshot's id is the sha256 of all of its bytes. Nothing in it depends on the host: wasm
memory is little-endian and holds no host pointers, so the same bytes resume on x86_64 and
aarch64.

Decoding is total and bounded: any bytes either decode or raise ``InvalidSnapshot``
(a remote fault); page counts are checked against the caller's memory cap before anything
is decompressed, and each page inflates to at most 64 KiB.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import struct
import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from .. import wire
from ..errors import DecodeError, RemoteError, SignatureError
from ..identity import verify
from ._errors import SandboxError

__all__ = [
    "PAGE",
    "SnapshotFault",
    "InvalidSnapshot",
    "SnapshotState",
    "Snapshot",
    "seal_snapshot",
    "open_snapshot",
    "memory_image",
    "pages_to_store",
]

PAGE = 65536
"""Bytes in a WebAssembly page."""
_MAGIC = b"ENSNAP\x00\x01"
_DOMAIN = b"edgenode.snapshot/1\x00"
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_SIG = 64
_ZERO_PAGE = bytes(PAGE)
_RAW, _ZLIB = 0, 1
_MAX_PAGES = 65536
_MAX_HEADER = 8 << 20
_GLOBAL_KINDS = {"i32": 4, "i64": 8, "f32": 4, "f64": 8}


class SnapshotFault(enum.StrEnum):
    """Why a snapshot was refused."""

    MALFORMED = "malformed"
    """The bytes are not a snapshot (or are over the receiver's bounds)."""
    BAD_SIGNATURE = "bad_signature"
    """The signature does not verify: the bytes were changed after signing."""
    UNTRUSTED = "untrusted"
    """Signed by a key the receiver does not trust for this task."""
    WRONG_MODULE = "wrong_module"
    """Taken from another module, or from other rewritten code (another binaryen)."""
    WRONG_IO = "wrong_io"
    """The task's input, arguments, environment or models differ from the snapshot's."""
    BROKEN_CHAIN = "broken_chain"
    """A delta whose base is not the snapshot before it."""
    TOO_LARGE = "too_large"
    """Its memory is over the receiver's cap."""


class InvalidSnapshot(SandboxError, RemoteError):
    """A snapshot that cannot be resumed; ``fault`` says why (a remote fault: snapshots come from peers)."""

    def __init__(self, fault: SnapshotFault, detail: str) -> None:
        super().__init__(f"{fault}: {detail}")
        self.fault = fault


@dataclass(frozen=True)
class SnapshotState:
    """What a checkpoint captured, before it is signed."""

    module_hash: str
    """sha256 hex of the module the task was submitted as."""
    code_hash: str
    """sha256 hex of the Asyncify-rewritten module that ran (snapshots resume only on identical code)."""
    memory_pages: int
    """Size of the linear memory, in 64 KiB pages."""
    pages: dict[int, bytes]
    """Page index -> 64 KiB content: every non-zero page (full), or every changed page (delta)."""
    globals: tuple[tuple[str, str, bytes], ...]
    """(export name, ``i32``/``i64``/``f32``/``f64``, little-endian bytes) of each mutable global."""
    unwind_ptr: int
    """Address of the Asyncify data (the task's unwind buffer) in linear memory."""
    fuel_used: int
    """Fuel the task used up to this checkpoint, over all its hops."""
    stdin_sha256: bytes
    """sha256 of the task's whole stdin."""
    stdin_offset: int
    """Bytes of stdin the task had read."""
    stdout: bytes
    """What it had written to stdout."""
    stderr: bytes
    """What it had written to stderr."""
    args: tuple[str, ...]
    """``argv[1:]``."""
    env: tuple[tuple[str, str], ...]
    """Environment, sorted."""
    models: tuple[str, ...]
    """Model slots (hashes) the task may call."""
    clock_ns: int
    """The task's monotonic clock at the checkpoint (it continues from here on resume)."""
    elapsed_ms: int
    """Wall-clock milliseconds the task ran, over all its hops (counts against its deadline)."""
    limits: tuple[int, int, int, int]
    """(fuel, timeout_ms, memory_mb, max_output_bytes) the task was given."""
    seq: int = 0
    """Checkpoint number within the task (0, 1, ...)."""
    base: str | None = None
    """Id of the snapshot this one is a delta against; ``None`` for a full snapshot."""
    spec: bytes = b""
    """The bytes of the task spec it serves (opaque to the sandbox; the node puts its signed spec here)."""


@dataclass(frozen=True)
class Snapshot:
    """A signed, verified snapshot: its state, its author and its bytes."""

    state: SnapshotState
    """What it holds."""
    author: bytes
    """Raw Ed25519 public key of the node that took it."""
    data: bytes = field(repr=False)
    """Its encoded bytes (what travels)."""

    @property
    def id(self) -> str:
        """sha256 hex of ``data``: the snapshot's content address."""
        return hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        """Bytes of ``data``."""
        return len(self.data)


def pages_to_store(memory: bytes | bytearray | memoryview, previous: bytes | bytearray | None) -> dict[int, bytes]:
    """The pages of ``memory`` a snapshot holds: those not zero (``previous is None``), else those changed."""
    view = memoryview(memory)
    out: dict[int, bytes] = {}
    for i in range(len(view) // PAGE):
        page = view[i * PAGE:(i + 1) * PAGE]
        if previous is None:
            if page != _ZERO_PAGE:
                out[i] = bytes(page)
        elif (i + 1) * PAGE > len(previous) or page != memoryview(previous)[i * PAGE:(i + 1) * PAGE]:
            out[i] = bytes(page)
    return out


def _pack_page(page: bytes) -> bytes:
    # Random-looking pages do not compress: try a 4 KiB sample first, so they cost a memcpy, not a deflate.
    if len(zlib.compress(page[:4096], 1)) > 3600:
        return bytes([_RAW]) + page
    packed = zlib.compress(page, 1)
    if len(packed) >= PAGE:
        return bytes([_RAW]) + page
    return bytes([_ZLIB]) + _U32.pack(len(packed)) + packed


def seal_snapshot(state: SnapshotState, signer: wire.Signer) -> Snapshot:
    """Encode ``state`` and sign it with ``signer`` (the node's identity)."""
    present = sorted(state.pages)
    header = wire.encode({
        "v": 1,
        "module": state.module_hash,
        "code": state.code_hash,
        "base": state.base,
        "seq": state.seq,
        "pages": state.memory_pages,
        "present": b"".join(_U32.pack(i) for i in present),
        "globals": [[name, kind, value] for name, kind, value in state.globals],
        "unwind": state.unwind_ptr,
        "fuel": state.fuel_used,
        "stdin_sha256": state.stdin_sha256,
        "stdin_offset": state.stdin_offset,
        "stdout": state.stdout,
        "stderr": state.stderr,
        "args": list(state.args),
        "env": [[k, v] for k, v in state.env],
        "models": list(state.models),
        "clock_ns": state.clock_ns,
        "elapsed_ms": state.elapsed_ms,
        "limits": list(state.limits),
        "spec": state.spec,
        "author": signer.public_key,
    })
    body = b"".join(_pack_page(state.pages[i]) for i in present)
    signed = b"".join((_MAGIC, _U32.pack(len(header)), header, _U64.pack(len(body)), body))
    sig = signer.sign(_DOMAIN + hashlib.sha256(signed).digest())
    return Snapshot(state, signer.public_key, signed + sig)


def _bad(detail: str) -> InvalidSnapshot:
    return InvalidSnapshot(SnapshotFault.MALFORMED, detail)


def _field(h: dict[str, wire.Value], name: str, kind: type) -> object:
    v = h.get(name)
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise _bad(f"header field {name!r} missing or not {kind.__name__}")
    return v


def _str_list(h: dict[str, wire.Value], name: str) -> tuple[str, ...]:
    v = _field(h, name, list)
    assert isinstance(v, list)
    if not all(isinstance(x, str) for x in v):
        raise _bad(f"{name} must be strings")
    return tuple(str(x) for x in v)


def _unpack_pages(body: memoryview, count: int) -> list[bytes]:
    pages: list[bytes] = []
    pos = 0
    for _ in range(count):
        if pos >= len(body):
            raise _bad("page data ends early")
        tag = body[pos]
        if tag == _RAW:
            if pos + 1 + PAGE > len(body):
                raise _bad("raw page runs past the end")
            pages.append(bytes(body[pos + 1:pos + 1 + PAGE]))
            pos += 1 + PAGE
        elif tag == _ZLIB:
            if pos + 5 > len(body):
                raise _bad("page header runs past the end")
            (n,) = _U32.unpack_from(body, pos + 1)
            if n > PAGE or pos + 5 + n > len(body):
                raise _bad("compressed page runs past the end")
            d = zlib.decompressobj()
            try:
                page = d.decompress(body[pos + 5:pos + 5 + n], PAGE)
            except zlib.error as exc:
                raise _bad(f"page does not inflate: {exc}") from exc
            if len(page) != PAGE or not d.eof or d.unconsumed_tail or d.unused_data:
                raise _bad("a page does not inflate to exactly 64 KiB")
            pages.append(page)
            pos += 5 + n
        else:
            raise _bad(f"unknown page encoding {tag}")
    if pos != len(body):
        raise _bad("trailing bytes after the pages")
    return pages


def open_snapshot(data: bytes, *, max_pages: int = _MAX_PAGES, trusted: Collection[bytes] | None = None) -> Snapshot:
    """Verify and decode snapshot bytes.

    The signature is checked before anything is decompressed; ``trusted`` (raw public keys),
    when given, must hold the author. Raises ``InvalidSnapshot``: ``malformed`` (also for
    memory over ``max_pages``), ``bad_signature``, ``untrusted``.
    """
    view = memoryview(data)
    if len(view) < len(_MAGIC) + 4 + 8 + _SIG or bytes(view[:len(_MAGIC)]) != _MAGIC:
        raise _bad("not a snapshot (no ENSNAP magic)")
    (hlen,) = _U32.unpack_from(view, len(_MAGIC))
    hstart = len(_MAGIC) + 4
    if hlen > _MAX_HEADER or hstart + hlen + 8 + _SIG > len(view):
        raise _bad("header runs past the end")
    (blen,) = _U64.unpack_from(view, hstart + hlen)
    bstart = hstart + hlen + 8
    if bstart + blen + _SIG != len(view):
        raise _bad("length fields do not match the size")
    try:
        h = wire.decode(view[hstart:hstart + hlen], max_items=4096, max_depth=3)
    except DecodeError as exc:
        raise _bad(f"header does not decode: {exc}") from exc
    if not isinstance(h, dict) or h.get("v") != 1:
        raise _bad("unknown snapshot version")
    author = _field(h, "author", bytes)
    assert isinstance(author, bytes)
    if len(author) != 32:
        raise _bad("author is not a 32-byte key")
    try:
        verify(author, _DOMAIN + hashlib.sha256(view[:bstart + blen]).digest(), bytes(view[bstart + blen:]))
    except SignatureError as exc:
        raise InvalidSnapshot(SnapshotFault.BAD_SIGNATURE, "the signature does not verify") from exc
    if trusted is not None and author not in trusted:
        raise InvalidSnapshot(SnapshotFault.UNTRUSTED, "signed by a node not trusted for this task")
    state = _state(h, view[bstart:bstart + blen], max_pages)
    return Snapshot(state, author, bytes(data))


def _state(h: dict[str, wire.Value], body: memoryview, max_pages: int) -> SnapshotState:
    pages = _field(h, "pages", int)
    present_raw = _field(h, "present", bytes)
    assert isinstance(pages, int) and isinstance(present_raw, bytes)
    if not 0 <= pages <= min(max_pages, _MAX_PAGES):
        raise InvalidSnapshot(SnapshotFault.TOO_LARGE, f"memory of {pages} pages is over the cap of {max_pages}")
    if len(present_raw) % 4:
        raise _bad("page list is not u32s")
    present = [i for (i,) in _U32.iter_unpack(present_raw)]
    if any(b <= a for a, b in itertools.pairwise(present)) or (present and present[-1] >= pages):
        raise _bad("page list is not increasing within the memory")
    contents = _unpack_pages(body, len(present))
    globals_: list[tuple[str, str, bytes]] = []
    raw_globals = _field(h, "globals", list)
    assert isinstance(raw_globals, list)
    for g in raw_globals:
        if not (isinstance(g, list) and len(g) == 3 and isinstance(g[0], str) and isinstance(g[1], str)
                and isinstance(g[2], bytes) and _GLOBAL_KINDS.get(g[1]) == len(g[2])):
            raise _bad("malformed global")
        globals_.append((g[0], g[1], g[2]))
    env_raw = _field(h, "env", list)
    assert isinstance(env_raw, list)
    env: list[tuple[str, str]] = []
    for kv in env_raw:
        if not (isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], str) and isinstance(kv[1], str)):
            raise _bad("malformed environment")
        env.append((kv[0], kv[1]))
    limits = _field(h, "limits", list)
    assert isinstance(limits, list)
    if len(limits) != 4 or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in limits):
        raise _bad("malformed limits")
    base = h.get("base")
    if base is not None and not isinstance(base, str):
        raise _bad("base is not a snapshot id")
    ints = {k: _field(h, k, int) for k in ("seq", "unwind", "fuel", "stdin_offset", "clock_ns", "elapsed_ms")}
    if any(not isinstance(v, int) or v < 0 for v in ints.values()):
        raise _bad("negative counter")
    stdin_sha = _field(h, "stdin_sha256", bytes)
    module, code = _field(h, "module", str), _field(h, "code", str)
    stdout, stderr, spec = _field(h, "stdout", bytes), _field(h, "stderr", bytes), _field(h, "spec", bytes)
    assert isinstance(stdin_sha, bytes) and isinstance(module, str) and isinstance(code, str)
    assert isinstance(stdout, bytes) and isinstance(stderr, bytes) and isinstance(spec, bytes)
    return SnapshotState(
        module_hash=module,
        code_hash=code,
        memory_pages=pages,
        pages=dict(zip(present, contents, strict=True)),
        globals=tuple(globals_),
        unwind_ptr=int(ints["unwind"]),  # type: ignore[call-overload]
        fuel_used=int(ints["fuel"]),  # type: ignore[call-overload]
        stdin_sha256=stdin_sha,
        stdin_offset=int(ints["stdin_offset"]),  # type: ignore[call-overload]
        stdout=stdout,
        stderr=stderr,
        args=_str_list(h, "args"),
        env=tuple(env),
        models=_str_list(h, "models"),
        clock_ns=int(ints["clock_ns"]),  # type: ignore[call-overload]
        elapsed_ms=int(ints["elapsed_ms"]),  # type: ignore[call-overload]
        limits=(limits[0], limits[1], limits[2], limits[3]),
        seq=int(ints["seq"]),  # type: ignore[call-overload]
        base=base,
        spec=spec,
    )


def memory_image(chain: Sequence[Snapshot]) -> bytearray:
    """The linear memory that a full snapshot and its deltas (oldest first) describe.

    Raises ``InvalidSnapshot`` (``broken_chain``) unless ``chain[0]`` is full, each delta's
    ``base`` is the id of the one before it, and all name the same module and code.
    """
    if not chain:
        raise InvalidSnapshot(SnapshotFault.BROKEN_CHAIN, "no snapshot")
    first = chain[0].state
    if first.base is not None:
        raise InvalidSnapshot(SnapshotFault.BROKEN_CHAIN, "the first snapshot is a delta")
    image = bytearray(first.memory_pages * PAGE)
    prev: Snapshot | None = None
    for snap in chain:
        s = snap.state
        if prev is not None:
            if s.base != prev.id:
                raise InvalidSnapshot(SnapshotFault.BROKEN_CHAIN, f"delta {snap.id[:16]} is not on {prev.id[:16]}")
            if (s.module_hash, s.code_hash) != (first.module_hash, first.code_hash):
                raise InvalidSnapshot(SnapshotFault.BROKEN_CHAIN, "a delta of another module")
            if s.memory_pages < prev.state.memory_pages:
                raise InvalidSnapshot(SnapshotFault.BROKEN_CHAIN, "memory shrank between snapshots")
            image.extend(bytes((s.memory_pages - prev.state.memory_pages) * PAGE))
        for i, page in s.pages.items():
            image[i * PAGE:(i + 1) * PAGE] = page
        prev = snap
    return image
