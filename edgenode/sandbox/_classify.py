"""Turning what happened in a run into one ``Status`` (pure: no wasmtime here)."""

from __future__ import annotations

from dataclasses import dataclass

from ._types import Status

__all__ = ["Outcome", "classify"]


@dataclass(frozen=True)
class Outcome:
    """The raw facts of a finished run, as the adapter observed them."""

    exit_code: int | None = None
    """The WASI exit code if the task called ``proc_exit``; ``None`` if it returned or trapped."""
    trap_kind: str | None = None
    """Lower-case trap code name (``out_of_fuel``, ``interrupt``, ``unreachable``...) if it trapped."""
    output_over: bool = False
    """stdout plus stderr passed the output cap."""
    memory_at_cap: bool = False
    """The linear memory ended within a quarter of its cap, at least 1 MiB (a heuristic: no grow-failure hook)."""
    instantiate_error: str | None = None
    """Why instantiation failed, if it did."""
    memory_refused: bool = False
    """Instantiation failed because the module's memory is over the cap."""
    deadline_hit: bool = False
    """The wall-clock deadline passed inside a host call (a WASI sleep, a model call) and the task was stopped."""
    checkpointed: bool = False
    """The run stopped at a safe point on request, after its snapshot was taken."""


def classify(o: Outcome) -> tuple[Status, int, str | None]:
    """``(status, exit_code, trap)`` for an outcome; exit code -1 when the task did not exit.

    Order matters: the output cap first and a deadline seen in a host call next (the adapter
    stops such a task by draining its fuel), then fuel and deadline, then memory exhaustion
    (a task that fails while its memory is at the cap failed because of the cap), then plain
    exits and traps.
    """
    if o.instantiate_error is not None:
        status = Status.MEMORY_LIMIT if o.memory_refused else Status.INVALID_MODULE
        return status, -1, o.instantiate_error
    if o.checkpointed:
        return Status.CHECKPOINTED, -1, None
    if o.output_over:
        return Status.OUTPUT_LIMIT, -1, "output cap reached"
    if o.deadline_hit:
        return Status.DEADLINE, -1, "deadline"
    if o.trap_kind == "out_of_fuel":
        return Status.OUT_OF_FUEL, -1, "out_of_fuel"
    if o.trap_kind == "interrupt":
        return Status.DEADLINE, -1, "deadline"
    if o.exit_code == 0 or (o.exit_code is None and o.trap_kind is None):
        return Status.OK, 0, None
    if o.memory_at_cap:
        return Status.MEMORY_LIMIT, o.exit_code if o.exit_code is not None else -1, o.trap_kind or "memory cap reached"
    if o.exit_code is not None:
        return Status.EXIT, o.exit_code, None
    return Status.TRAP, -1, o.trap_kind
