"""Safe points at run time: unwinding a task into a snapshot, and rewinding a snapshot into a task.

The wasmtime side of checkpoints. :class:`SafePoints` is the per-run hook behind the
``edgenode.safepoint`` host call of an Asyncify-rewritten task:

- no checkpoint wanted: the call returns 0 at once;
- one wanted: it writes the Asyncify data header into the task's unwind buffer, calls
  ``asyncify_start_unwind`` and returns; the task's stack unwinds into that buffer and
  ``_start`` returns to the sandbox, which calls :meth:`SafePoints.capture`;
- after :meth:`SafePoints.restore` (or after a capture when the run goes on), the sandbox
  calls ``_start`` again; the task rewinds to the safe point, whose call then ends the
  rewind (``asyncify_stop_rewind``) and returns 1.

A checkpointable run reads stdin through :func:`define_stdin` (a shadow of WASI's
``fd_read`` for fd 0 that counts the bytes read), so a snapshot can name its stdin offset.
"""

from __future__ import annotations

import ctypes
import hashlib
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import wasmtime as wt

from .. import wire
from ._asyncify import GLOBAL_EXPORT_PREFIX
from ._host import COUNTDOWN_NEVER, SAFEPOINT_RESERVED, current, set_countdown
from ._snapshot import PAGE, InvalidSnapshot, Snapshot, SnapshotFault, SnapshotState, pages_to_store, seal_snapshot
from ._types import TaskIO

__all__ = ["PACE_S", "Checkpointing", "SafePoints", "define_stdin", "stdin_hash", "check_resume"]

_WASI_MODULE = "wasi_snapshot_preview1"
_ESUCCESS, _EBADF, _EFAULT, _EINVAL = 0, 8, 21, 28
_IOVEC = struct.Struct("<II")
_U32 = struct.Struct("<I")
_HEADER = struct.Struct("<II")
_MAX_IOVS = 1024
PACE_S = 0.001
"""About how much of a task's work passes between its calls of the host at safe points."""
_MAX_SKIP = 1 << 24
_PACK = {"i32": struct.Struct("<i"), "i64": struct.Struct("<q"), "f32": struct.Struct("<f"), "f64": struct.Struct("<d")}


@dataclass(frozen=True)
class Checkpointing:
    """How a run takes checkpoints (``Sandbox.prepare(..., checkpointing=...)``)."""

    signer: wire.Signer
    """Signs each snapshot: the node's identity."""
    every_ms: int = 0
    """Take a snapshot at the first safe point after every this many milliseconds and go on running
    (0: only when ``PreparedRun.request_checkpoint`` asks)."""
    every_calls: int = 0
    """Take a snapshot at every this many-th safe-point call and go on running (0: never); deterministic,
    for tests and benchmarks."""
    on_snapshot: Callable[[Snapshot], None] | None = None
    """Called on the task's thread with each snapshot (ship it to a peer here; keep it short)."""
    spec: bytes = b""
    """The task spec the run serves, carried in each snapshot (opaque to the sandbox)."""
    stop: bool = False
    """The first snapshot (periodic or requested) ends the run with status ``checkpointed``."""
    deltas: bool = True
    """After the first snapshot of a run, snapshots hold only the pages that changed since the one before."""


def _kind(ty: wt.ValType) -> str:
    return str(ty)


def _memory(caller: Any) -> wt.Memory | None:
    mem = caller.get("memory")
    return mem if isinstance(mem, wt.Memory) else None


def _fd_read(caller: Any, fd: int, iovs: int, iovs_len: int, nread_ptr: int) -> int:
    ctx = current()
    if ctx is None or ctx.stdin is None or fd != 0:
        return _EBADF  # stdout and stderr are write-only; a checkpointable run has no files
    iovs, iovs_len, nread_ptr = iovs & 0xFFFFFFFF, iovs_len & 0xFFFFFFFF, nread_ptr & 0xFFFFFFFF
    if iovs_len > _MAX_IOVS:
        return _EINVAL
    mem = _memory(caller)
    if mem is None:
        return _EFAULT
    size = mem.data_len(caller)
    if iovs + iovs_len * _IOVEC.size > size or nread_ptr + 4 > size:
        return _EFAULT
    table = bytes(mem.read(caller, iovs, iovs + iovs_len * _IOVEC.size))
    data, offset, total = ctx.stdin, ctx.stdin_offset, 0
    for ptr, length in _IOVEC.iter_unpack(table):
        if ptr + length > size:
            return _EFAULT
        take = min(length, len(data) - offset)
        if take > 0:
            mem.write(caller, data[offset:offset + take], ptr)
            offset += take
            total += take
        if take < length:
            break
    ctx.stdin_offset = offset
    mem.write(caller, _U32.pack(total), nread_ptr)
    return _ESUCCESS


def define_stdin(linker: wt.Linker) -> None:
    """Shadow WASI's ``fd_read`` in ``linker``: fd 0 reads ``HostCtx.stdin`` and counts the offset."""
    i32 = wt.ValType.i32()
    linker.allow_shadowing = True
    linker.define_func(_WASI_MODULE, "fd_read", wt.FuncType([i32, i32, i32, i32], [i32]), _fd_read,
                       access_caller=True)
    linker.allow_shadowing = False


class SafePoints:
    """The safe-point hook of one checkpointable run (``HostCtx.safepoint``).

    ``request`` may be called from any thread; everything else runs on the task's thread.
    """

    def __init__(self, policy: Checkpointing | None, *, now: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._now = now
        self._lock = threading.Lock()
        self._wanted = False
        self._stop = policy.stop if policy is not None else False
        self._every = policy.every_ms / 1000.0 if policy is not None and policy.every_ms > 0 else None
        self._due = now() + self._every if self._every is not None else float("inf")
        self._every_calls = policy.every_calls if policy is not None else 0
        self.calls = 0
        """Safe-point calls of the host this run made (rewinds not counted)."""
        self._skip = 0
        self._last_call = now()
        self.armed = False
        """True while ``_start`` runs (not during a start function)."""
        self.rewinding = False
        self.unwound_at: int | None = None
        """Address of the unwind buffer once the task unwound; ``None`` otherwise."""
        self.problem: str | None = None
        """Why the last wanted checkpoint could not start (a bad unwind buffer)."""
        self.previous: bytes | None = None
        """The memory of the last snapshot, for deltas."""
        self.last: Snapshot | None = None
        self.taken = 0
        """Sequence number of the next snapshot (over all hops of the task)."""
        self.first_seq = 0
        """Sequence number of this run's first snapshot (``taken - first_seq`` were taken here)."""

    def request(self, *, stop: bool) -> None:
        """Take a snapshot at the next safe point; ``stop`` ends the run there (status ``checkpointed``)."""
        with self._lock:
            self._wanted = True
            self._stop = self._stop or stop

    @property
    def stopping(self) -> bool:
        """The checkpoint just taken ends the run."""
        return self._stop

    def __call__(self, caller: Any, buf: int, length: int) -> int:
        if self.rewinding:
            self.rewinding = False
            caller.get("asyncify_stop_rewind")(caller)
            self._pace(caller, buf, length)
            return 1
        self.calls += 1
        if self.policy is None:
            set_countdown(caller, buf, length, COUNTDOWN_NEVER)
            return 0
        nth = self._every_calls > 0 and self.calls % self._every_calls == 0
        if not (self.armed and (self._wanted or nth or self._now() >= self._due)):
            self._pace(caller, buf, length)
            return 0
        buf &= 0xFFFFFFFF
        mem = _memory(caller)
        if mem is None or length < 4 * SAFEPOINT_RESERVED or buf + length > mem.data_len(caller) or buf % 4:
            self.problem = "the safe point's unwind buffer is not in memory"
            self._wanted = False
            self._due = float("inf")
            return 0
        mem.write(caller, _HEADER.pack(buf + SAFEPOINT_RESERVED, buf + length) + bytes(4), buf)
        caller.get("asyncify_start_unwind")(caller, buf)
        self.unwound_at = buf
        return 0

    def _pace(self, caller: Any, buf: int, length: int) -> None:
        """Set the countdown so the task calls the host about every ``PACE_S`` of its work.

        A host call from wasmtime-py costs microseconds; a task may pass a safe point every
        few hundred nanoseconds. The countdown doubles while calls come faster than half
        the pace and halves while they come slower than twice it, so a checkpoint waits at
        most about ``PACE_S`` of work for its safe point. ``every_calls`` keeps it at 0.
        """
        if self.policy is None:
            set_countdown(caller, buf, length, COUNTDOWN_NEVER)
            return
        if self._every_calls:
            return
        now = self._now()
        gap, self._last_call = now - self._last_call, now
        if gap < PACE_S / 2:
            self._skip = min(self._skip * 2 + 1, _MAX_SKIP)
        elif gap > PACE_S * 2:
            self._skip //= 2
        set_countdown(caller, buf, length, self._skip)

    def capture(self, store: wt.Store, instance: wt.Instance, state: dict[str, Any]) -> Snapshot:
        """Finish the unwind and seal a snapshot; ``state`` gives the fields the run knows."""
        assert self.policy is not None and self.unwound_at is not None
        exports = instance.exports(store)
        stop_unwind = exports["asyncify_stop_unwind"]
        assert isinstance(stop_unwind, wt.Func)
        stop_unwind(store)
        mem = exports["memory"]
        assert isinstance(mem, wt.Memory)
        size = mem.data_len(store)
        raw = ctypes.string_at(ctypes.addressof(mem.data_ptr(store).contents), size)
        base = self.last.id if (self.last is not None and self.policy.deltas) else None
        pages = pages_to_store(raw, self.previous if base is not None else None)
        globals_: list[tuple[str, str, bytes]] = []
        for name, ext in _mutable_globals(instance, store):
            kind = _kind(ext.type(store).content)
            globals_.append((name, kind, _PACK[kind].pack(ext.value(store))))
        snap_state = SnapshotState(
            memory_pages=size // PAGE,
            pages=pages,
            globals=tuple(globals_),
            unwind_ptr=self.unwound_at,
            seq=self.taken,
            base=base,
            spec=self.policy.spec,
            **state,
        )
        snap = seal_snapshot(snap_state, self.policy.signer)
        self.previous, self.last = raw, snap
        self.taken += 1
        with self._lock:
            self._wanted = False
            if self._every is not None:
                self._due = self._now() + self._every
        return snap

    def rewind(self, store: wt.Store, instance: wt.Instance, at: int) -> None:
        """Start rewinding to the safe point whose unwind buffer is at ``at`` (``_start`` runs next)."""
        start_rewind = instance.exports(store)["asyncify_start_rewind"]
        assert isinstance(start_rewind, wt.Func)
        start_rewind(store, at)
        self.unwound_at = None
        self.rewinding = True

    def restore(self, store: wt.Store, instance: wt.Instance, image: bytearray, snap: Snapshot) -> None:
        """Load a snapshot's memory (``image``, the whole chain's) and globals into a fresh instance,
        and start rewinding to its safe point; later snapshots of this run are deltas on ``snap``.

        Raises ``InvalidSnapshot`` when the snapshot does not fit this module; wasmtime's
        error when the memory cannot grow to the snapshot's size (the caller's memory cap).
        """
        state = snap.state
        mem = instance.exports(store)["memory"]
        assert isinstance(mem, wt.Memory)
        pages = mem.size(store)
        if state.memory_pages < pages:
            raise InvalidSnapshot(SnapshotFault.WRONG_MODULE, "the snapshot's memory is smaller than the module's")
        if state.memory_pages > pages:
            mem.grow(store, state.memory_pages - pages)
        if not state.unwind_ptr + 8 <= len(image):
            raise InvalidSnapshot(SnapshotFault.MALFORMED, "the unwind buffer lies outside the memory")
        have = {name: ext for name, ext in _mutable_globals(instance, store)}
        if sorted(have) != sorted(name for name, _, _ in state.globals):
            raise InvalidSnapshot(SnapshotFault.WRONG_MODULE, "the snapshot's globals are not this module's")
        for name, kind, value in state.globals:
            ext = have[name]
            if _kind(ext.type(store).content) != kind:
                raise InvalidSnapshot(SnapshotFault.WRONG_MODULE, f"global {name} is not a {kind}")
            ext.set_value(store, _PACK[kind].unpack(value)[0])
        src = (ctypes.c_char * len(image)).from_buffer(image)
        ctypes.memmove(ctypes.addressof(mem.data_ptr(store).contents), src, len(image))
        self.last, self.taken = snap, state.seq + 1
        self.first_seq = self.taken
        if self.policy is not None and self.policy.deltas:
            self.previous = bytes(image)
        self.rewind(store, instance, state.unwind_ptr)


def _mutable_globals(instance: wt.Instance, store: wt.Store) -> list[tuple[str, wt.Global]]:
    out: list[tuple[str, wt.Global]] = []
    exports = instance.exports(store)
    for name, ext in sorted(exports.items()):
        if not name.startswith(GLOBAL_EXPORT_PREFIX):
            continue
        if isinstance(ext, wt.Global) and ext.type(store).mutable:
            out.append((name, ext))
    return out


def check_resume(
    chain: Sequence[Snapshot], module_hash: str, code_hash: str | None, io: TaskIO, models: tuple[str, ...]
) -> None:
    """Refuse (``InvalidSnapshot``) snapshots that are not of this module's code or this task's I/O.

    The chain itself (full snapshot first, each delta on the one before) is checked by ``memory_image``.
    """
    for snap in chain:
        s = snap.state
        if s.module_hash != module_hash:
            raise InvalidSnapshot(SnapshotFault.WRONG_MODULE, f"taken from module {s.module_hash[:16]}")
        if code_hash is None:
            raise InvalidSnapshot(SnapshotFault.WRONG_MODULE, "this node cannot checkpoint the module (no wasm-opt)")
        if s.code_hash != code_hash:
            raise InvalidSnapshot(SnapshotFault.WRONG_MODULE, "its code was rewritten differently (another binaryen)")
    s = chain[-1].state
    if (s.stdin_sha256, s.args, s.env, s.models) != (stdin_hash(io.stdin), tuple(io.args),
                                                     tuple(sorted(io.env.items())), tuple(models)):
        raise InvalidSnapshot(SnapshotFault.WRONG_IO, "the task's stdin, args, env or models differ")


def stdin_hash(data: bytes) -> bytes:
    """sha256 of a task's stdin, as a snapshot names it."""
    return hashlib.sha256(data).digest()
