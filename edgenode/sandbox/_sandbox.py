"""The wasmtime adapter: one engine, precompiled modules by sha256, limited runs.

No wasmtime exception leaves this module: runs end in a ``RunResult``; bad module bytes
raise ``InvalidModule`` (``CompileTimeout`` when compiling them takes too long).

Peer input is hostile: a module name must be a sha256 hex digest before it names a file,
only precompiled files this node sealed are loaded, module and function sizes are bounded
before compiling, larger modules compile in a child process under a time and memory
limit, and a task's limits are clamped to the node's ceilings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime as wt

from ..errors import LocalError
from ._asyncify import ASYNCIFY_EXPORTS, asyncify, have_wasm_opt, imports_safepoint
from ._cache import ModuleCache, is_sha256_hex
from ._checkpoint import Checkpointing, SafePoints, check_resume, define_stdin
from ._classify import Outcome
from ._clock import define_wasi_time
from ._compile import compile_in_child
from ._compile_worker import engine_config
from ._errors import InvalidModule, SandboxClosed, UnknownModule
from ._host import HOST_FUNCS, HOST_MODULE, HostCtx, define_host, set_current
from ._prepared import PreparedRun
from ._scan import scan_module
from ._snapshot import Snapshot, memory_image, open_snapshot
from ._types import HostModels, Limits, RunResult, SandboxConfig, TaskIO
from ._wasi import OutputSink, make_wasi

__all__ = ["Sandbox", "PreparedRun"]

_WASI_MODULE = "wasi_snapshot_preview1"
_MAX_CACHED_MODULES = 256
_REWRITTEN = b"ENASYNC1"  # precompiled payload of an Asyncify-rewritten module: magic, code hash, code

log = logging.getLogger("edgenode.sandbox")


@dataclass
class _Compiled:
    module: wt.Module
    pre: wt.InstancePre | None
    problem: str | None
    code_hash: str | None = None
    """sha256 hex of the Asyncify-rewritten bytes of a checkpointable module; ``None`` for others."""
    pre_ckpt: wt.InstancePre | None = None
    """The module linked for checkpointable runs (stdin served by the host)."""


def _engine_settings(cfg: SandboxConfig) -> dict[str, Any]:
    """The engine settings, as the compiler child process receives them (one source for both engines)."""
    return {
        "memory_reservation": cfg.memory_reservation_kb << 10,
        "memory_guard_size": cfg.memory_guard_kb << 10,
        "memory_reservation_for_growth": cfg.memory_growth_reservation_kb << 10,
        "max_wasm_stack": cfg.max_wasm_stack_kb << 10,
        "cranelift_opt_level": cfg.cranelift_opt_level,
    }


def _fingerprint(cfg: SandboxConfig) -> str:
    """Names the cache sub-directory: precompiled code is only valid for the same engine settings."""
    key = (
        f"wasmtime-py={importlib.metadata.version('wasmtime')};fuel;epoch;"
        f"res={cfg.memory_reservation_kb};guard={cfg.memory_guard_kb};grow={cfg.memory_growth_reservation_kb};"
        f"stack={cfg.max_wasm_stack_kb}"
    )
    if cfg.cranelift_opt_level != "speed":
        key += f";opt={cfg.cranelift_opt_level}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class Sandbox:
    """Runs untrusted WASI command modules under hard limits. Thread-safe.

    ``compile`` once per module (cached by sha256, in memory and precompiled on disk), then
    ``run`` as often as needed, from any thread (the node calls it through
    ``asyncio.to_thread``). An epoch ticker thread drives deadlines until ``close()``.
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        models: HostModels | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """``models`` serves the ``edgenode.infer`` host call (``None``: every call answers ERR_NO_MODEL);
        ``clock`` (seconds) measures ``wall_ms``."""
        self.config = config or SandboxConfig()
        self.models = models
        self.clock = clock
        self._settings = _engine_settings(self.config)
        self.engine = wt.Engine(engine_config(self._settings))
        self._linker = wt.Linker(self.engine)
        self._linker.define_wasi()
        define_wasi_time(self._linker)
        define_host(self._linker)
        self._linker_ckpt = wt.Linker(self.engine)  # for checkpointable runs: stdin served by the host
        self._linker_ckpt.define_wasi()
        define_wasi_time(self._linker_ckpt)
        define_stdin(self._linker_ckpt)
        define_host(self._linker_ckpt)
        self._lock = threading.Lock()
        self._modules: OrderedDict[str, _Compiled] = OrderedDict()
        self._disk: ModuleCache | None = None
        if self.config.cache_dir is not None:
            root = Path(self.config.cache_dir)
            self._disk = ModuleCache(root / _fingerprint(self.config), root, self.config.cache_quota_mb << 20)
        self._stop = threading.Event()
        self._active = 0
        self._wake = threading.Condition()
        self._ticker = threading.Thread(target=self._tick, name="edgenode-epoch", daemon=True)
        self._ticker.start()

    # -- lifecycle ------------------------------------------------------------------------

    def _tick(self) -> None:
        # The epoch counts whole periods of monotonic time, so late wake-ups do not stretch deadlines.
        # It only ticks while wasm runs: an idle node's ticker sleeps (a tick every 5 ms, each taking
        # the GIL, was most of an idle node's CPU). Deadlines are relative to the epoch when armed.
        period = self.config.epoch_tick_ms / 1000.0
        while not self._stop.is_set():
            with self._wake:
                while self._active == 0 and not self._stop.is_set():
                    self._wake.wait()
            began, epoch = time.monotonic(), 0
            while not self._stop.wait(period):
                due = int((time.monotonic() - began) / period)
                while epoch < due:
                    self.engine.increment_epoch()
                    epoch += 1
                with self._wake:
                    if self._active == 0:
                        break

    @contextlib.contextmanager
    def _ticking(self) -> Iterator[None]:
        """Keep the epoch ticking while wasm runs in this block."""
        with self._wake:
            self._active += 1
            if self._active == 1:
                self._wake.notify()
        try:
            yield
        finally:
            with self._wake:
                self._active -= 1

    def close(self) -> None:
        """Stop the epoch ticker and drop compiled modules. Runs in flight still end (fuel; sleeps are cut short)."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._ticker is not threading.current_thread():
            self._ticker.join(timeout=5)
        with self._lock:
            self._modules.clear()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- modules --------------------------------------------------------------------------

    def compile(self, module_bytes: bytes) -> str:
        """Validate and compile a module (or load its precompiled form); return its sha256 hex.

        Raises ``InvalidModule`` for bytes that are not WebAssembly or are over the node's
        module or function size limits, and ``CompileTimeout`` when compiling takes longer
        than ``compile_timeout_ms``. A module that is valid WebAssembly but not a runnable
        task (no ``_start``, a forbidden import) compiles, and its runs end ``invalid_module``.
        """
        if self._stop.is_set():
            raise SandboxClosed("sandbox is closed")
        h = hashlib.sha256(module_bytes).hexdigest()
        with self._lock:
            if h in self._modules:
                self._modules.move_to_end(h)
                return h
        cfg = self.config
        if len(module_bytes) > cfg.max_module_bytes:
            raise InvalidModule(
                f"module is {len(module_bytes)} bytes, over this node's limit of {cfg.max_module_bytes}"
            )
        shape = scan_module(module_bytes)
        if shape.largest_body > cfg.max_function_bytes:
            raise InvalidModule(
                f"a function body is {shape.largest_body} bytes, over this node's limit of {cfg.max_function_bytes}"
            )
        cached = self._load_cached(h)
        module, code_hash = cached if cached is not None else self._compile_new(h, module_bytes)
        self._remember(h, self._check(module, code_hash))
        return h

    def _compile_new(self, h: str, module_bytes: bytes) -> tuple[wt.Module, str | None]:
        cfg = self.config
        code_hash: str | None = None
        if imports_safepoint(module_bytes):
            if have_wasm_opt():
                rewritten = asyncify(module_bytes, timeout_s=cfg.compile_timeout_ms / 1000.0)
                module_bytes, code_hash = rewritten.wasm, rewritten.code_hash
            else:
                log.warning("wasm-opt (binaryen) is missing: a task with safe points runs without checkpoints",
                            extra={"module_hash": h[:16]})
        prefix = b"" if code_hash is None else _REWRITTEN + code_hash.encode("ascii")
        if len(module_bytes) <= cfg.inline_compile_bytes:
            try:
                module = wt.Module(self.engine, module_bytes)
            except (wt.WasmtimeError, ValueError, TypeError) as exc:
                raise InvalidModule(f"not a valid WebAssembly module: {_first_line(exc)}") from exc
            if self._disk is not None:
                self._disk.store(h, prefix + bytes(module.serialize()))
            return module, code_hash
        payload = compile_in_child(
            module_bytes, self._settings, timeout_s=cfg.compile_timeout_ms / 1000.0, memory_mb=cfg.compile_memory_mb
        )
        try:
            module = wt.Module.deserialize(self.engine, payload)
        except wt.WasmtimeError as exc:
            raise LocalError(f"the compiler process returned unusable code: {_first_line(exc)}") from exc
        if self._disk is not None:
            self._disk.store(h, prefix + payload)
        return module, code_hash

    def compile_file(self, path: Path) -> str:
        """``compile`` the bytes of a file; an unreadable file is a ``LocalError``."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise LocalError(f"cannot read {path}: {exc.strerror}") from exc
        return self.compile(data)

    def has_module(self, module_hash: str) -> bool:
        """True when ``run`` can start this module without its bytes (compiled in memory, or on disk).

        Any name that is not a sha256 hex digest is simply not here. A disk file's seal is
        checked when it is loaded (a file that fails it is deleted: ``UnknownModule``).
        """
        if not is_sha256_hex(module_hash):
            return False
        with self._lock:
            if module_hash in self._modules:
                return True
        return self._disk is not None and self._disk.has(module_hash)  # no I/O: callers may be event loops

    def forget(self, module_hash: str) -> None:
        """Drop a module from memory (its precompiled file on disk stays; the next run loads it)."""
        with self._lock:
            self._modules.pop(module_hash, None)

    def cache_bytes(self) -> int:
        """Bytes the precompiled modules take on disk (0 without a cache directory)."""
        return 0 if self._disk is None else self._disk.usage_bytes()

    def _load_cached(self, h: str) -> tuple[wt.Module, str | None] | None:
        if self._disk is None:
            return None
        payload = self._disk.load(h)  # only files this node sealed; never a name that is not a hash
        if payload is None:
            return None
        code_hash: str | None = None
        if payload.startswith(_REWRITTEN):  # sealed by this node, so the prefix is its own
            code_hash = payload[len(_REWRITTEN):len(_REWRITTEN) + 64].decode("ascii")
            payload = payload[len(_REWRITTEN) + 64:]
        try:
            return wt.Module.deserialize(self.engine, payload), code_hash
        except wt.WasmtimeError:
            self._disk.discard(h)  # sealed by this node for another engine build: recompile
            return None

    def _check(self, module: wt.Module, code_hash: str | None = None) -> _Compiled:
        for imp in module.imports:
            if imp.module == _WASI_MODULE:
                continue
            if imp.module == HOST_MODULE and imp.name in HOST_FUNCS:
                continue
            return _Compiled(module, None, f"forbidden import {imp.module}.{imp.name}")
        if not any(e.name == "_start" and isinstance(e.type, wt.FuncType) for e in module.exports):
            return _Compiled(module, None, "no _start export")
        try:
            pre = self._linker.instantiate_pre(module)
            exports = {e.name for e in module.exports}
            if code_hash is None or not exports.issuperset(ASYNCIFY_EXPORTS):
                return _Compiled(module, pre, None)
            return _Compiled(module, pre, None, code_hash, self._linker_ckpt.instantiate_pre(module))
        except wt.WasmtimeError as exc:
            return _Compiled(module, None, f"cannot link: {_first_line(exc)}")

    def _remember(self, h: str, compiled: _Compiled) -> None:
        with self._lock:
            self._modules[h] = compiled
            self._modules.move_to_end(h)
            while len(self._modules) > _MAX_CACHED_MODULES:
                self._modules.popitem(last=False)

    def _get(self, h: str) -> _Compiled:
        if not is_sha256_hex(h):
            raise UnknownModule(f"not a module hash: {h[:80]!r}")
        with self._lock:
            compiled = self._modules.get(h)
            if compiled is not None:
                self._modules.move_to_end(h)
                return compiled
        cached = self._load_cached(h)
        if cached is None:
            raise UnknownModule(f"module {h[:16]} is not compiled here")
        compiled = self._check(*cached)
        self._remember(h, compiled)
        return compiled

    # -- runs -------------------------------------------------------------------------------

    def prepare(
        self,
        module_hash: str,
        io: TaskIO | None = None,
        limits: Limits | None = None,
        *,
        checkpointing: Checkpointing | None = None,
        resume: Sequence[Snapshot] = (),
    ) -> PreparedRun:
        """Instantiate a task (store, WASI, limits) without starting it.

        ``limits`` are clamped to the node's ceilings (``SandboxConfig.max_*``); the result
        records what the task ran under. Raises ``UnknownModule`` for a hash never compiled
        (or a name that is not a hash), and the model registry's ``InferenceError`` when
        ``io.models`` names a model it does not hold.

        ``checkpointing`` lets a task with safe points take snapshots (periodic, or on
        ``PreparedRun.request_checkpoint``); it is ignored for other modules and for runs
        granted a directory. ``resume`` (a full snapshot and its deltas, oldest first, each
        opened with ``open_snapshot``) continues a checkpointed task where it stopped: ``io``
        must be the task's own and ``limits`` default to the snapshot's; the fuel and time it
        already used count. Raises ``InvalidSnapshot`` when the snapshots do not fit.
        """
        if self._stop.is_set():
            raise SandboxClosed("sandbox is closed")
        io = io or TaskIO()
        compiled = self._get(module_hash)
        models = tuple(self.models.resolve(m) for m in io.models) if (io.models and self.models) else io.models
        last = resume[-1] if resume else None
        if last is not None:
            check_resume(resume, module_hash, compiled.code_hash, io, models)
            limits = limits or Limits(*last.state.limits)
        limits = self.config.clamp(limits or self.config.default_limits())
        ckpt = compiled.pre_ckpt is not None and io.readonly_dir is None and (checkpointing is not None or resume)
        t0 = self.clock()
        store = wt.Store(self.engine)
        ctx = HostCtx(models=models, registry=self.models, wake=self._stop, on_deadline=lambda: store.set_fuel(0))
        store.set_limits(
            memory_size=limits.memory_mb << 20,
            table_elements=self.config.max_table_elements,
            instances=self.config.max_instances,
            tables=self.config.max_tables,
            memories=self.config.max_memories,
        )
        fuel_base = last.state.fuel_used if last is not None else 0
        timeout_ms = max(1, limits.timeout_ms - last.state.elapsed_ms) if last is not None else limits.timeout_ms
        store.set_fuel(max(limits.fuel - fuel_base, 0))
        holder: list[PreparedRun] = []
        sink = OutputSink(limits.max_output_bytes, lambda: holder[0]._stop_now() if holder else store.set_fuel(0))
        if compiled.problem is not None or compiled.pre is None:
            run = PreparedRun(
                self, module_hash, store, None, sink, ctx, limits, Outcome(instantiate_error=compiled.problem), 0.0
            )
            holder.append(run)
            return run
        points: SafePoints | None = None
        if ckpt:
            points = SafePoints(checkpointing)
            ctx.safepoint, ctx.stdin = points, io.stdin
        try:
            store.set_wasi(make_wasi(dataclasses.replace(io, stdin=b"") if ckpt else io, sink))
        except wt.WasmtimeError as exc:
            raise LocalError(f"cannot grant {io.readonly_dir}: {exc}") from exc
        if last is not None:
            sink.stdout, sink.stderr = [last.state.stdout], [last.state.stderr]
            sink.total = len(last.state.stdout) + len(last.state.stderr)
            ctx.stdin_offset = last.state.stdin_offset
            ctx.origin_ns = time.monotonic_ns() - last.state.clock_ns
        instance: wt.Instance | None = None
        early: Outcome | None = None
        # A start function runs now: it gets the task's deadline too (epoch and host calls), then start() re-arms.
        store.set_epoch_deadline(math.ceil(timeout_ms / self.config.epoch_tick_ms) + 1)
        ctx.deadline = time.monotonic() + timeout_ms / 1000.0
        set_current(ctx)
        pre = compiled.pre_ckpt if ckpt and compiled.pre_ckpt is not None else compiled.pre
        try:
            with self._ticking():
                instance = pre.instantiate(store)
                if points is not None and last is not None:
                    points.restore(store, instance, memory_image(resume), last)
        except wt.Trap as exc:
            code = exc.trap_code
            if ctx.deadline_hit or (code is not None and code.name.lower() == "interrupt"):
                early = Outcome(deadline_hit=True)
            else:
                why = code.name.lower() if code else exc.message
                early = Outcome(instantiate_error=f"start function trapped: {why}")
        except wt.WasmtimeError as exc:
            msg = _first_line(exc)
            early = Outcome(instantiate_error=msg, memory_refused="limit" in msg or "memory" in msg)
        finally:
            set_current(None)
        store.set_epoch_deadline(1 << 40)  # armed for real by start()
        run = PreparedRun(self, module_hash, store, instance, sink, ctx, limits, early, (self.clock() - t0) * 1000.0)
        ctx.on_deadline = run._stop_now
        run._points, run._code_hash, run._io, run._timeout_ms = points, compiled.code_hash, io, timeout_ms
        if last is not None:
            run._fuel_base, run._elapsed_base, run._resumed_from = fuel_base, last.state.elapsed_ms, last.id
        holder.append(run)
        return run

    def run(
        self,
        module_hash: str,
        io: TaskIO | None = None,
        limits: Limits | None = None,
        *,
        checkpointing: Checkpointing | None = None,
        resume: Sequence[Snapshot] = (),
    ) -> RunResult:
        """Instantiate and run a compiled task to completion; never raises for what the task does."""
        return self.prepare(module_hash, io, limits, checkpointing=checkpointing, resume=resume).start()

    def code_hash(self, module_hash: str) -> str | None:
        """sha256 hex of the Asyncify-rewritten code of a checkpointable module; ``None`` for other modules."""
        return self._get(module_hash).code_hash

    def open_snapshot(self, data: bytes, *, trusted: Collection[bytes] | None = None) -> Snapshot:
        """``open_snapshot`` bounded by this node's memory ceiling (``max_memory_mb``)."""
        return open_snapshot(data, max_pages=self.config.max_memory_mb << 4, trusted=trusted)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
