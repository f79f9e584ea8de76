"""The sandbox's typed values: configuration, per-task limits, task I/O and results."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._snapshot import Snapshot

__all__ = ["SandboxConfig", "Limits", "TaskIO", "Status", "RunResult", "HostModels"]


@dataclass(frozen=True)
class Limits:
    """Hard limits of one task run. Every field is enforced by the sandbox."""

    fuel: int = 2_000_000_000
    """WASM fuel (about one unit per instruction); the task stops with ``out_of_fuel`` past it."""
    timeout_ms: int = 10_000
    """Wall-clock deadline in milliseconds, time in host calls (WASI sleeps, model calls) included;
    ``deadline`` past it."""
    memory_mb: int = 64
    """Cap on the task's linear memory in MiB; growth past it fails (``memory_limit``)."""
    max_output_bytes: int = 1 << 20
    """Cap on stdout plus stderr bytes; the task stops with ``output_limit`` past it."""

    def __post_init__(self) -> None:
        if self.fuel <= 0 or self.timeout_ms <= 0 or self.memory_mb <= 0 or self.max_output_bytes < 0:
            raise ValueError(f"limits must be positive: {self}")


@dataclass(frozen=True)
class SandboxConfig:
    """``[sandbox]``: the engine-wide settings, the default per-task limits and the node's ceilings (Pi-sized).

    A task's limits (from its spec) are clamped to the ``max_*`` ceilings before it runs;
    ``RunResult.limits`` records the limits it actually ran under.
    """

    fuel: int = 2_000_000_000
    """Default fuel of a task that does not ask for less."""
    timeout_ms: int = 10_000
    """Default wall-clock deadline of a task, in milliseconds."""
    memory_mb: int = 64
    """Default linear-memory cap of a task, in MiB."""
    max_output_bytes: int = 1 << 20
    """Largest stdout plus stderr a task may produce (also the cap of a task that names none)."""
    max_fuel: int = 10_000_000_000
    """Most fuel any task gets, whatever its spec asks."""
    max_timeout_ms: int = 30_000
    """Longest wall-clock deadline any task gets, in milliseconds (time in host calls counts)."""
    max_memory_mb: int = 256
    """Largest linear memory any task gets, in MiB."""
    max_module_bytes: int = 8 << 20
    """Largest module the sandbox compiles; bigger ones are ``invalid_module``."""
    max_function_bytes: int = 256 << 10
    """Largest single function body the sandbox compiles (compile time grows faster than its size)."""
    compile_timeout_ms: int = 10_000
    """Wall-clock limit of compiling one module; past it the compiler is killed (``compile_timeout``)."""
    compile_memory_mb: int = 384
    """Address-space limit of the compiler process, in MiB; a compile that needs more is ``invalid_module``."""
    inline_compile_bytes: int = 16 << 10
    """Modules up to this size compile in the node's process (bounded by their size); larger ones in a
    child process under ``compile_timeout_ms`` and ``compile_memory_mb``. 0 sends every module there."""
    cranelift_opt_level: str = "speed"
    """Cranelift optimisation: ``speed``, ``speed_and_size`` or ``none`` (compiles about 2x faster, runs slower)."""
    cache_quota_mb: int = 256
    """Disk space of the precompiled-module cache, in MiB; least recently used modules are evicted past it."""
    max_instances: int = 4
    """Instances a task's store may create (a WASI command needs one)."""
    max_tables: int = 4
    """Tables a task's store may create."""
    max_table_elements: int = 100_000
    """Elements a task's tables may hold in total."""
    max_memories: int = 1
    """Linear memories a task's store may create."""
    max_wasm_stack_kb: int = 512
    """Native stack given to WASM code, in KiB; deeper recursion traps (``stack_overflow``)."""
    epoch_tick_ms: int = 5
    """Period of the epoch ticker that drives deadlines; a deadline fires within one tick."""
    memory_reservation_kb: int = 1024
    """Address space reserved per linear memory, in KiB (small, so many instances fit)."""
    memory_guard_kb: int = 64
    """Guard region after each linear memory, in KiB."""
    memory_growth_reservation_kb: int = 64
    """Extra address space reserved for growth, in KiB."""
    cache_dir: Path | None = None
    """Directory of precompiled modules (``<sha256>.cwasm``, sealed); ``None`` keeps them in memory only."""

    def __post_init__(self) -> None:
        if self.cache_dir is not None and not isinstance(self.cache_dir, Path):
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))  # TOML gives a string
        if self.epoch_tick_ms <= 0 or self.max_instances <= 0 or self.max_memories <= 0:
            raise ValueError(f"sandbox settings must be positive: {self}")
        ceilings = (self.max_fuel, self.max_timeout_ms, self.max_memory_mb, self.max_module_bytes,
                    self.max_function_bytes, self.compile_timeout_ms, self.compile_memory_mb, self.cache_quota_mb)
        if min(ceilings) <= 0 or self.max_output_bytes < 0 or self.inline_compile_bytes < 0:
            raise ValueError(f"sandbox limits must be positive: {self}")
        if self.cranelift_opt_level not in ("speed", "speed_and_size", "none"):
            raise ValueError(f"cranelift_opt_level must be speed, speed_and_size or none: {self.cranelift_opt_level!r}")
        self.default_limits()  # checks the limit defaults

    def default_limits(self) -> Limits:
        """The per-task limits a task gets when its spec does not name any (within the ceilings)."""
        return self.clamp(
            Limits(fuel=self.fuel, timeout_ms=self.timeout_ms, memory_mb=self.memory_mb,
                   max_output_bytes=self.max_output_bytes)
        )

    def clamp(self, limits: Limits) -> Limits:
        """``limits`` with every field lowered to this node's ceiling: what a task actually runs under."""
        return Limits(
            fuel=min(limits.fuel, self.max_fuel),
            timeout_ms=min(limits.timeout_ms, self.max_timeout_ms),
            memory_mb=min(limits.memory_mb, self.max_memory_mb),
            max_output_bytes=min(limits.max_output_bytes, self.max_output_bytes),
        )


@dataclass(frozen=True)
class TaskIO:
    """What a task sees: its whole world. No ambient authority beyond these fields."""

    stdin: bytes = b""
    """Bytes the task reads on stdin."""
    args: tuple[str, ...] = ()
    """``argv[1:]``; ``argv[0]`` is always ``task``."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment variables."""
    readonly_dir: Path | None = None
    """A host directory the task may read (never write) as ``/data``; ``None`` gives no filesystem."""
    models: tuple[str, ...] = ()
    """Model hashes (or registry aliases) the task may call through ``edgenode.infer``; index = model slot."""


class Status(enum.StrEnum):
    """The one outcome of a task run."""

    OK = "ok"
    """``_start`` returned, or the task exited with code 0."""
    EXIT = "exit"
    """The task exited with a non-zero code (``RunResult.exit_code``)."""
    OUT_OF_FUEL = "out_of_fuel"
    """The fuel limit was reached."""
    DEADLINE = "deadline"
    """The wall-clock deadline passed."""
    MEMORY_LIMIT = "memory_limit"
    """The task needed more linear memory than its cap and failed because of it."""
    OUTPUT_LIMIT = "output_limit"
    """stdout plus stderr went past the output cap."""
    TRAP = "trap"
    """A WebAssembly trap (``RunResult.trap`` names its kind)."""
    INVALID_MODULE = "invalid_module"
    """The module was refused: not WebAssembly, over the node's size limits, a forbidden import, a bad start."""
    COMPILE_TIMEOUT = "compile_timeout"
    """Compiling the module took longer than the node's ``compile_timeout_ms`` (the compiler was killed)."""
    CHECKPOINTED = "checkpointed"
    """The run stopped at a safe point on request; ``RunResult.snapshot`` resumes it (not a task outcome)."""


@dataclass(frozen=True)
class RunResult:
    """The typed result of one task run."""

    status: Status
    """The outcome."""
    exit_code: int
    """WASI exit code (0 for ok, the code for ``exit``, -1 when the task did not exit)."""
    stdout: bytes
    """Captured stdout, at most the output cap."""
    stderr: bytes
    """Captured stderr, at most what is left of the output cap."""
    fuel_used: int
    """Fuel consumed."""
    wall_ms: float
    """Wall-clock time of instantiate + run, in milliseconds."""
    trap: str | None
    """Trap kind (``unreachable``, ``stack_overflow``, ``memory_out_of_bounds``...) or a reason; else ``None``."""
    module_hash: str
    """sha256 hex of the module's bytes."""
    limits: Limits | None = None
    """The limits the task ran under: its own, clamped to the node's ceilings."""
    snapshot: Snapshot | None = None
    """The last snapshot this run took (the one to resume when the status is ``checkpointed``), else ``None``."""
    resumed_from: str | None = None
    """Id of the snapshot this run resumed from; ``None`` for a run from the start."""
    checkpoints: int = 0
    """Snapshots this run took."""

    @property
    def ok(self) -> bool:
        """True when the status is ``ok``."""
        return self.status is Status.OK


class HostModels(Protocol):
    """What the sandbox needs from a model registry to serve the ``edgenode.infer`` host call.

    ``edgenode.inference.ModelRegistry`` implements it.
    """

    def resolve(self, ref: str) -> str:
        """The model hash of ``ref`` (a hash or an alias); raises ``InferenceError`` if unknown."""
        ...

    def infer_raw(self, ref: str, data: bytes) -> bytes:
        """Run the model's single input on raw little-endian tensor bytes; return its first output's bytes.

        Raises ``InferenceError`` subclasses on an unknown model, a bad input size, or a failed run.
        """
        ...
