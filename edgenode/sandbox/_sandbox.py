"""The wasmtime adapter: one engine, precompiled modules by sha256, limited runs.

No wasmtime exception leaves this module: runs end in a ``RunResult``; bad module bytes
raise ``InvalidModule``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import wasmtime as wt

from ..errors import LocalError
from ._classify import Outcome, classify
from ._errors import InvalidModule, SandboxClosed, UnknownModule
from ._host import HOST_FUNCS, HOST_MODULE, HostCtx, define_host, set_current
from ._types import HostModels, Limits, RunResult, SandboxConfig, TaskIO
from ._wasi import OutputSink, make_wasi

__all__ = ["Sandbox", "PreparedRun"]

_WASI_MODULE = "wasi_snapshot_preview1"
_PAGE = 65536
_MAX_CACHED_MODULES = 256


@dataclass
class _Compiled:
    module: wt.Module
    pre: wt.InstancePre | None
    problem: str | None


def _engine_config(cfg: SandboxConfig) -> wt.Config:
    c = wt.Config()
    c.consume_fuel = True
    c.epoch_interruption = True
    c.memory_reservation = cfg.memory_reservation_kb << 10
    c.memory_guard_size = cfg.memory_guard_kb << 10
    c.memory_reservation_for_growth = cfg.memory_growth_reservation_kb << 10
    c.max_wasm_stack = cfg.max_wasm_stack_kb << 10
    return c


def _fingerprint(cfg: SandboxConfig) -> str:
    """Names the cache sub-directory: precompiled code is only valid for the same engine settings."""
    key = (
        f"wasmtime-py={importlib.metadata.version('wasmtime')};fuel;epoch;"
        f"res={cfg.memory_reservation_kb};guard={cfg.memory_guard_kb};grow={cfg.memory_growth_reservation_kb};"
        f"stack={cfg.max_wasm_stack_kb}"
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class PreparedRun:
    """An instantiated task, ready to start: one use. ``Sandbox.prepare`` makes it."""

    def __init__(
        self,
        sandbox: Sandbox,
        module_hash: str,
        store: wt.Store,
        instance: wt.Instance | None,
        sink: OutputSink,
        ctx: HostCtx,
        limits: Limits,
        outcome: Outcome | None,
        setup_ms: float,
    ) -> None:
        self._sandbox = sandbox
        self.module_hash = module_hash
        self._store = store
        self._instance = instance
        self._sink = sink
        self._ctx = ctx
        self._limits = limits
        self._early = outcome
        self._setup_ms = setup_ms
        self._done = False
        self._over_fuel: int | None = None

    @property
    def failed(self) -> str | None:
        """Why instantiation failed (the run will end ``invalid_module``/``memory_limit``), else ``None``."""
        return self._early.instantiate_error if self._early is not None else None

    def start(self) -> RunResult:
        """Run ``_start`` to completion (or to a limit) on the calling thread."""
        if self._done:
            raise LocalError("a prepared run starts once")
        self._done = True
        if self._early is not None or self._instance is None:
            return self._result(self._early or Outcome(instantiate_error="not instantiated"), 0, 0.0)
        clock = self._sandbox.clock
        store = self._store
        entry = self._instance.exports(store).get("_start")
        if not isinstance(entry, wt.Func):
            return self._result(Outcome(instantiate_error="no _start export"), 0, 0.0)
        ticks = math.ceil(self._limits.timeout_ms / self._sandbox.config.epoch_tick_ms) + 1
        store.set_epoch_deadline(ticks)
        set_current(self._ctx)
        t0 = clock()
        try:
            entry(store)
            outcome = Outcome()
        except wt.ExitTrap as exc:
            outcome = Outcome(exit_code=exc.code)
        except wt.Trap as exc:
            code = exc.trap_code
            outcome = Outcome(trap_kind=code.name.lower() if code is not None else exc.message.splitlines()[0][:200])
        except wt.WasmtimeError as exc:
            outcome = Outcome(trap_kind=str(exc).splitlines()[0][:200])
        finally:
            set_current(None)
        wall = (clock() - t0) * 1000.0
        failed = outcome.trap_kind is not None or outcome.exit_code not in (None, 0)
        outcome = Outcome(
            exit_code=outcome.exit_code,
            trap_kind=outcome.trap_kind,
            output_over=self._sink.over,
            memory_at_cap=failed and self._memory_at_cap(),
        )
        return self._result(outcome, self._fuel_used(), wall)

    def _fuel_used(self) -> int:
        if self._sink.over and self._over_fuel is not None:
            return self._over_fuel
        try:
            return self._limits.fuel - self._store.get_fuel()
        except wt.WasmtimeError:
            return self._limits.fuel

    def _drain_fuel(self) -> None:
        # Called from the output sink while the task is inside fd_write: stop it at once.
        try:
            self._over_fuel = self._limits.fuel - self._store.get_fuel()
            self._store.set_fuel(0)
        except wt.WasmtimeError:
            self._over_fuel = None

    def _memory_at_cap(self) -> bool:
        if self._instance is None:
            return False
        mem = self._instance.exports(self._store).get("memory")
        if not isinstance(mem, wt.Memory):
            return False
        cap = self._limits.memory_mb << 20
        # Within a quarter of the cap (at least 1 MiB + a page, a typical large malloc) counts as "at the cap".
        return mem.data_len(self._store) >= cap - max(cap // 4, (1 << 20) + _PAGE)

    def _result(self, outcome: Outcome, fuel_used: int, wall_ms: float) -> RunResult:
        status, exit_code, trap = classify(outcome)
        return RunResult(
            status=status,
            exit_code=exit_code,
            stdout=b"".join(self._sink.stdout),
            stderr=b"".join(self._sink.stderr),
            fuel_used=fuel_used,
            wall_ms=self._setup_ms + wall_ms,
            trap=trap,
            module_hash=self.module_hash,
        )


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
        self.engine = wt.Engine(_engine_config(self.config))
        self._linker = wt.Linker(self.engine)
        self._linker.define_wasi()
        define_host(self._linker)
        self._lock = threading.Lock()
        self._modules: OrderedDict[str, _Compiled] = OrderedDict()
        self._cache_dir: Path | None = None
        if self.config.cache_dir is not None:
            self._cache_dir = Path(self.config.cache_dir) / _fingerprint(self.config)
            try:
                self._cache_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LocalError(f"cannot create sandbox cache {self._cache_dir}: {exc.strerror}") from exc
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="edgenode-epoch", daemon=True)
        self._ticker.start()

    # -- lifecycle ------------------------------------------------------------------------

    def _tick(self) -> None:
        # The epoch counts whole periods of monotonic time, so late wake-ups do not stretch deadlines.
        period = self.config.epoch_tick_ms / 1000.0
        began, epoch = time.monotonic(), 0
        while not self._stop.wait(period):
            due = int((time.monotonic() - began) / period)
            while epoch < due:
                self.engine.increment_epoch()
                epoch += 1

    def close(self) -> None:
        """Stop the epoch ticker and drop compiled modules. Runs in flight still end (fuel)."""
        self._stop.set()
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

        Raises ``InvalidModule`` for bytes that are not WebAssembly. A module that is valid
        WebAssembly but not a runnable task (no ``_start``, a forbidden import) compiles, and
        its runs end with status ``invalid_module``.
        """
        if self._stop.is_set():
            raise SandboxClosed("sandbox is closed")
        h = hashlib.sha256(module_bytes).hexdigest()
        with self._lock:
            if h in self._modules:
                self._modules.move_to_end(h)
                return h
        if not module_bytes.startswith(b"\0asm"):
            raise InvalidModule("not a WebAssembly binary (no \\0asm magic)")
        module = self._load_cached(h)
        if module is None:
            try:
                module = wt.Module(self.engine, module_bytes)
            except (wt.WasmtimeError, ValueError, TypeError) as exc:
                raise InvalidModule(f"not a valid WebAssembly module: {str(exc).splitlines()[0][:200]}") from exc
            self._store_cached(h, module)
        self._remember(h, self._check(module))
        return h

    def compile_file(self, path: Path) -> str:
        """``compile`` the bytes of a file; an unreadable file is a ``LocalError``."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise LocalError(f"cannot read {path}: {exc.strerror}") from exc
        return self.compile(data)

    def has_module(self, module_hash: str) -> bool:
        """True when ``run`` can start this module without its bytes (compiled in memory or on disk)."""
        with self._lock:
            if module_hash in self._modules:
                return True
        path = self._cache_path(module_hash)
        return path is not None and path.is_file()

    def forget(self, module_hash: str) -> None:
        """Drop a module from memory (its precompiled file on disk stays; the next run loads it)."""
        with self._lock:
            self._modules.pop(module_hash, None)

    def _cache_path(self, h: str) -> Path | None:
        if self._cache_dir is None or len(h) != 64:
            return None
        return self._cache_dir / f"{h}.cwasm"

    def _load_cached(self, h: str) -> wt.Module | None:
        path = self._cache_path(h)
        if path is None or not path.is_file():
            return None
        try:
            return wt.Module.deserialize_file(self.engine, str(path))
        except wt.WasmtimeError:
            return None  # stale or foreign file: recompile and overwrite

    def _store_cached(self, h: str, module: wt.Module) -> None:
        path = self._cache_path(h)
        if path is None:
            return
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
            with os.fdopen(fd, "wb") as f:
                f.write(module.serialize())
            os.replace(tmp, path)
        except OSError as exc:
            raise LocalError(f"cannot write {path}: {exc.strerror}") from exc

    def _check(self, module: wt.Module) -> _Compiled:
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
        except wt.WasmtimeError as exc:
            return _Compiled(module, None, f"cannot link: {str(exc).splitlines()[0][:200]}")
        return _Compiled(module, pre, None)

    def _remember(self, h: str, compiled: _Compiled) -> None:
        with self._lock:
            self._modules[h] = compiled
            self._modules.move_to_end(h)
            while len(self._modules) > _MAX_CACHED_MODULES:
                self._modules.popitem(last=False)

    def _get(self, h: str) -> _Compiled:
        with self._lock:
            compiled = self._modules.get(h)
            if compiled is not None:
                self._modules.move_to_end(h)
                return compiled
        module = self._load_cached(h)
        if module is None:
            raise UnknownModule(f"module {h[:16]} is not compiled here")
        compiled = self._check(module)
        self._remember(h, compiled)
        return compiled

    # -- runs -------------------------------------------------------------------------------

    def prepare(self, module_hash: str, io: TaskIO | None = None, limits: Limits | None = None) -> PreparedRun:
        """Instantiate a task (store, WASI, limits) without starting it.

        Raises ``UnknownModule`` for a hash never compiled, and the model registry's
        ``InferenceError`` when ``io.models`` names a model it does not hold.
        """
        if self._stop.is_set():
            raise SandboxClosed("sandbox is closed")
        io = io or TaskIO()
        limits = limits or self.config.default_limits()
        compiled = self._get(module_hash)
        models = tuple(self.models.resolve(m) for m in io.models) if (io.models and self.models) else io.models
        ctx = HostCtx(models=models, registry=self.models)
        t0 = self.clock()
        store = wt.Store(self.engine)
        store.set_limits(
            memory_size=limits.memory_mb << 20,
            table_elements=self.config.max_table_elements,
            instances=self.config.max_instances,
            tables=self.config.max_tables,
            memories=self.config.max_memories,
        )
        store.set_fuel(limits.fuel)
        store.set_epoch_deadline(1 << 40)  # armed for real by start()
        holder: list[PreparedRun] = []
        sink = OutputSink(limits.max_output_bytes, lambda: holder[0]._drain_fuel())
        if compiled.problem is not None or compiled.pre is None:
            run = PreparedRun(
                self, module_hash, store, None, sink, ctx, limits, Outcome(instantiate_error=compiled.problem), 0.0
            )
            holder.append(run)
            return run
        try:
            store.set_wasi(make_wasi(io, sink))
        except wt.WasmtimeError as exc:
            raise LocalError(f"cannot grant {io.readonly_dir}: {exc}") from exc
        instance: wt.Instance | None = None
        early: Outcome | None = None
        set_current(ctx)
        try:
            instance = compiled.pre.instantiate(store)
        except wt.Trap as exc:
            code = exc.trap_code
            early = Outcome(instantiate_error=f"start function trapped: {code.name.lower() if code else exc.message}")
        except wt.WasmtimeError as exc:
            msg = str(exc).splitlines()[0][:200]
            early = Outcome(instantiate_error=msg, memory_refused="limit" in msg or "memory" in msg)
        finally:
            set_current(None)
        run = PreparedRun(self, module_hash, store, instance, sink, ctx, limits, early, (self.clock() - t0) * 1000.0)
        holder.append(run)
        return run

    def run(self, module_hash: str, io: TaskIO | None = None, limits: Limits | None = None) -> RunResult:
        """Instantiate and run a compiled task to completion; never raises for what the task does."""
        return self.prepare(module_hash, io, limits).start()
