"""Long tasks with safe points in the simulator: the migrate.c module, its input, and what a kill does to them.

``task = "migrate"`` in a scenario's mix submits ``examples/tasks/migrate.c`` (built here with the
repository's wasm32-wasi clang; the sandbox applies Asyncify with binaryen's wasm-opt), with the
mix's ``checkpoint_ms`` in its spec: the executor ships a snapshot of the running task to the
submitter that often, and when the executor dies the next one resumes from the latest.

On memnet a kill crashes a node's transport while its objects live on; a process killed with -9
stops computing.  :class:`KillSwitch` (one per node, in its engine view) does to the node's runs of
tasks with safe points what the kill would: each is asked to stop at its next safe point, the fuel
it had used is noted (:attr:`KillSwitch.killed`: the work a restart from zero would redo), the
snapshot of that stop is dropped, and the run ends in the executor with ``CancelledError``, so the
node records nothing and answers nothing, as a dead process would.  A run that starts while its
node is down ends the same way before doing any work.  Runs of tasks without safe points are left
alone (they finish and are recorded, as before).

Runs with safe points go at this machine's speed: a profile's ``speed`` (a sleep after the run for
other tasks) does not slow them, since a node killed in that sleep would have finished the task
already, and its snapshots would show the task ahead of its board.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import importlib.util
import random
import tempfile
import threading
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

from edgenode import wire
from edgenode.errors import EdgenodeError
from edgenode.protocol import TaskLimits, TaskSpec
from edgenode.sandbox import (
    Checkpointing,
    Limits,
    PreparedRun,
    RunResult,
    Sandbox,
    Snapshot,
    TaskIO,
    have_wasm_opt,
)

from ._errors import SimnetError

__all__ = [
    "MIGRATE_DEPTH",
    "MIGRATE_MIB",
    "KillSwitch",
    "SwitchedRun",
    "migrate_input",
    "migrate_limits",
    "migrate_module",
    "same_as_uninterrupted",
]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "tasks"
MIGRATE_MIB = 1
"""MiB of state the task fills and mixes (a snapshot is about 1.1 MB: pseudo-random pages do not compress)."""
MIGRATE_DEPTH = 16
"""Recursion depth of each round: 65,536 safe points a round, about 1.5 ms and 2e7 fuel on a laptop core."""
_FUEL_PER_ROUND = 30_000_000
"""Fuel budget per round (a round takes about 2e7)."""


@cache
def migrate_module() -> bytes:
    """``examples/tasks/migrate.c`` for wasm32-wasi (built once per process); SimnetError when it cannot be."""
    build_py = EXAMPLES / "build.py"
    if not have_wasm_opt():
        raise SimnetError("migrate tasks need binaryen's wasm-opt (scripts/setup.sh installs it)")
    spec = importlib.util.spec_from_file_location("edgenode_example_tasks_build", build_py)
    if not build_py.exists() or spec is None or spec.loader is None:
        raise SimnetError(f"migrate tasks are built from the repository's {EXAMPLES}, which is missing")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    if not build.have_clang():
        raise SimnetError("migrate tasks need clang for wasm32-wasi (scripts/setup.sh installs it)")
    with tempfile.TemporaryDirectory(prefix="simnet-migrate-") as tmp:
        try:
            return Path(build.build_c("migrate", Path(tmp))).read_bytes()
        except RuntimeError as exc:
            raise SimnetError(f"cannot build migrate.c: {exc}") from exc


def migrate_input(payload: int, rounds: int) -> bytes:
    """The task's stdin: ``ROUNDS MIB DEPTH`` and 64 numbers drawn from ``payload`` (so outputs differ per task)."""
    rng = random.Random(payload)
    numbers = " ".join(str(rng.randrange(1_000_003)) for _ in range(64))
    return f"{rounds} {MIGRATE_MIB} {MIGRATE_DEPTH} {numbers}".encode()


def migrate_limits(rounds: int, timeout_ms: int) -> TaskLimits:
    """Limits that let a task of ``rounds`` rounds finish (fuel with a margin, 16 MiB of memory)."""
    return TaskLimits(fuel=rounds * _FUEL_PER_ROUND + 1_000_000_000, timeout_ms=timeout_ms, memory_mb=16)


def _task_id(policy: Checkpointing | None) -> str:
    if policy is None or not policy.spec:
        return ""
    try:
        return wire.open_as(TaskSpec, policy.spec)[1].task_id
    except EdgenodeError:
        return ""


class KillSwitch:
    """One node's runs of tasks with safe points, and what killing the node does to them (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[SwitchedRun] = set()
        self.down = False
        """The node is killed (until :meth:`revive`)."""
        self.killed: list[tuple[str, int]] = []
        """(node task id, fuel it had used) for each run a kill stopped: work a restart from zero redoes."""
        self.resumed: list[tuple[str, int]] = []
        """(node task id, fuel of the snapshot) for each run that resumed from a snapshot here."""

    def wrap(
        self,
        run: PreparedRun,
        policy: Checkpointing | None,
        resume: Sequence[Snapshot],
        after: Callable[[RunResult], None],
    ) -> SwitchedRun:
        """``run`` as the executor gets it: a kill ends it (see the module doc); ``after(result)`` runs
        when a run without safe points ends (the profile's slowdown)."""
        carried = resume[-1].state.fuel_used if resume else None
        return SwitchedRun(self, run, _task_id(policy), carried, after)

    def guard(self, policy: Checkpointing | None) -> Checkpointing | None:
        """``policy`` with its snapshots dropped while the node is down (a dead node ships nothing)."""
        if policy is None or policy.on_snapshot is None:
            return policy
        ship = policy.on_snapshot

        def on_snapshot(snap: Snapshot) -> None:
            if not self.down:
                ship(snap)

        return dataclasses.replace(policy, on_snapshot=on_snapshot)

    def kill(self) -> None:
        """The node dies: its runs of tasks with safe points stop at their next safe point and vanish."""
        with self._lock:
            self.down = True
            live = list(self._live)
        for run in live:
            run.kill()

    def revive(self) -> None:
        """The node is back (a fresh process, as far as its runs are concerned)."""
        with self._lock:
            self.down = False

    def live_tasks(self) -> list[str]:
        """Node task ids of the runs with safe points going on now (what a kill would stop)."""
        with self._lock:
            return [run.task_id for run in self._live]

    def _enter(self, run: SwitchedRun) -> bool:
        with self._lock:
            if self.down:
                return False
            self._live.add(run)
            if run.carried is not None:
                self.resumed.append((run.task_id, run.carried))
            return True

    def _leave(self, run: SwitchedRun, killed_at: int | None) -> None:
        with self._lock:
            self._live.discard(run)
            if killed_at is not None:
                self.killed.append((run.task_id, killed_at))


class SwitchedRun:
    """A :class:`~edgenode.sandbox.PreparedRun` behind a node's :class:`KillSwitch` (what the executor sees)."""

    def __init__(
        self, switch: KillSwitch, run: PreparedRun, task_id: str, carried: int | None,
        after: Callable[[RunResult], None],
    ) -> None:  # fmt: skip
        self._switch = switch
        self._run = run
        self._after = after
        self._killed = False
        self.task_id = task_id
        self.carried = carried
        """Fuel of the snapshot this run resumes from (None: it starts from zero)."""

    @property
    def checkpointable(self) -> bool:
        return self._run.checkpointable

    @property
    def failed(self) -> str | None:
        return self._run.failed

    def request_checkpoint(self, *, stop: bool = True) -> bool:
        return self._run.request_checkpoint(stop=stop)

    def kill(self) -> None:
        self._killed = True
        self._run.request_checkpoint(stop=True)

    def start(self) -> RunResult:
        """Run to the end, or until the node is killed: then raise ``CancelledError`` (nothing to record)."""
        if not self._run.checkpointable:
            plain = self._run.start()
            self._after(plain)
            return plain
        if not self._switch._enter(self):  # the node is down: the run ends before doing any work
            self._run.request_checkpoint(stop=True)
            self._run.start()  # releases the instance at the first safe point
            raise asyncio.CancelledError("its node is down")
        result: RunResult | None = None
        try:
            result = self._run.start()
        finally:
            self._switch._leave(self, result.fuel_used if self._killed and result is not None else None)
        if self._killed:
            raise asyncio.CancelledError("its node was killed")
        return result


def same_as_uninterrupted(sandbox: Sandbox, payload: int, rounds: int, output_sha256: str) -> bool:
    """Whether ``output_sha256`` is the output of an uninterrupted run of the task (blocking: a whole run)."""
    module = sandbox.compile(migrate_module())
    lim = migrate_limits(rounds, 30_000)
    res = sandbox.run(module, TaskIO(stdin=migrate_input(payload, rounds)), Limits(lim.fuel, 30_000, lim.memory_mb))
    return res.ok and hashlib.sha256(res.stdout).hexdigest() == output_sha256
