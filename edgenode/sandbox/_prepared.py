"""A prepared task run: one instantiated task, started once, with its checkpoints and resume state."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import wasmtime as wt

from ..errors import LocalError
from ._checkpoint import SafePoints, stdin_hash
from ._classify import Outcome, classify
from ._host import HostCtx, set_current
from ._types import Limits, RunResult, TaskIO
from ._wasi import OutputSink

if TYPE_CHECKING:
    from ._sandbox import Sandbox

__all__ = ["PreparedRun"]

_PAGE = 65536


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
        self._stopped_fuel: int | None = None
        # Checkpoints (set by Sandbox.prepare for a checkpointable run).
        self._points: SafePoints | None = None
        self._code_hash: str | None = None
        self._io = TaskIO()
        self._fuel_base = 0
        self._elapsed_base = 0
        self._timeout_ms = limits.timeout_ms
        self._resumed_from: str | None = None
        self._checkpointed = False

    @property
    def checkpointable(self) -> bool:
        """True when this run can take snapshots at its safe points (``prepare(..., checkpointing=...)``)."""
        return self._points is not None and self._points.policy is not None

    def request_checkpoint(self, *, stop: bool = True) -> bool:
        """Ask for a snapshot at the task's next safe point (thread-safe; any time before or during ``start``).

        ``stop`` ends the run there with status ``checkpointed`` (its ``snapshot`` resumes it
        elsewhere); otherwise the task goes on. False when the run cannot take checkpoints.
        """
        if self._points is None or self._points.policy is None:
            return False
        self._points.request(stop=stop)
        return True

    @property
    def failed(self) -> str | None:
        """Why instantiation failed (the run will end ``invalid_module``/``memory_limit``), else ``None``."""
        return self._early.instantiate_error if self._early is not None else None

    def start(self) -> RunResult:
        """Run ``_start`` to completion (or to a limit) on the calling thread."""
        if self._done:
            raise LocalError("a prepared run starts once")
        self._done = True
        try:
            return self._start()
        finally:
            self._release()

    def _release(self) -> None:
        # The store's WASI callbacks (held on the native side, out of the GC's sight) reach the
        # sink, whose callback reached this run and so the store again: an uncollectable cycle
        # that kept every store alive (about 17 KB of RSS per task). Cut the callbacks.
        self._sink.detach()
        self._ctx.on_deadline = None
        self._ctx.memory = None
        self._ctx.safepoint = None

    def _start(self) -> RunResult:
        if self._early is not None or self._instance is None:
            return self._result(self._early or Outcome(instantiate_error="not instantiated"), 0, 0.0)
        clock = self._sandbox.clock
        store = self._store
        entry = self._instance.exports(store).get("_start")
        if not isinstance(entry, wt.Func):
            return self._result(Outcome(instantiate_error="no _start export"), 0, 0.0)
        ticks = math.ceil(self._timeout_ms / self._sandbox.config.epoch_tick_ms) + 1
        store.set_epoch_deadline(ticks)
        self._ctx.deadline = time.monotonic() + self._timeout_ms / 1000.0
        set_current(self._ctx)
        t0 = clock()
        try:
            with self._sandbox._ticking():
                self._run_entry(entry, t0)
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
            deadline_hit=self._ctx.deadline_hit,
            checkpointed=self._checkpointed and outcome.trap_kind is None and outcome.exit_code is None,
        )
        return self._result(outcome, self._fuel_used(), wall)

    def _run_entry(self, entry: wt.Func, t0: float) -> None:
        """Call ``_start``; at each checkpoint (the task unwound), snapshot, then stop or rewind and go on."""
        points, store, instance = self._points, self._store, self._instance
        assert instance is not None
        if points is not None:
            points.armed = True
        while True:
            entry(store)
            if points is None or points.unwound_at is None or points.policy is None:
                return
            snap = points.capture(store, instance, self._snapshot_fields(t0))
            if points.policy.on_snapshot is not None:
                points.policy.on_snapshot(snap)
            if points.stopping:
                self._checkpointed = True
                return
            points.rewind(store, instance, snap.state.unwind_ptr)

    def _snapshot_fields(self, t0: float) -> dict[str, object]:
        io, lim, sink = self._io, self._limits, self._sink
        return {
            "module_hash": self.module_hash,
            "code_hash": self._code_hash,
            "fuel_used": self._fuel_used(),
            "stdin_sha256": stdin_hash(io.stdin),
            "stdin_offset": self._ctx.stdin_offset,
            "stdout": b"".join(sink.stdout),
            "stderr": b"".join(sink.stderr),
            "args": tuple(io.args),
            "env": tuple(sorted(io.env.items())),
            "models": tuple(self._ctx.models),
            "clock_ns": time.monotonic_ns() - self._ctx.origin_ns,
            "elapsed_ms": self._elapsed_base + int((self._sandbox.clock() - t0) * 1000.0),
            "limits": (lim.fuel, lim.timeout_ms, lim.memory_mb, lim.max_output_bytes),
        }

    def _fuel_used(self) -> int:
        if self._stopped_fuel is not None:
            return self._fuel_base + self._stopped_fuel
        try:
            return self._fuel_base + self._segment_fuel() - self._store.get_fuel()
        except wt.WasmtimeError:
            return self._limits.fuel

    def _segment_fuel(self) -> int:
        return max(self._limits.fuel - self._fuel_base, 0)

    def _stop_now(self) -> None:
        # Called from a host call on the task's thread (the output sink inside fd_write, a WASI
        # sleep past the deadline): drain the fuel, so the task stops at its next instruction.
        if self._stopped_fuel is not None:
            return
        try:
            self._stopped_fuel = self._segment_fuel() - self._store.get_fuel()
            self._store.set_fuel(0)
        except wt.WasmtimeError:
            self._stopped_fuel = None

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
        taken = self._points.taken - self._points.first_seq if self._points is not None else 0
        return RunResult(
            status=status,
            exit_code=exit_code,
            stdout=b"".join(self._sink.stdout),
            stderr=b"".join(self._sink.stderr),
            fuel_used=fuel_used,
            wall_ms=self._setup_ms + wall_ms,
            trap=trap,
            module_hash=self.module_hash,
            limits=self._limits,
            snapshot=self._points.last if self._points is not None and taken else None,
            resumed_from=self._resumed_from,
            checkpoints=taken,
        )
