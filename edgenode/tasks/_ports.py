"""What the task services need from the rest of the node, as small protocols (fakes fit them too)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..clock import Clock, SystemClock
from ..sandbox import Limits, RunResult, TaskIO
from ..wire import Envelope

__all__ = ["Clock", "SystemClock", "WasmEngine", "InferEngine", "AdmissionHook"]


class WasmEngine(Protocol):
    """The part of :class:`edgenode.sandbox.Sandbox` the executor uses (all synchronous)."""

    def has_module(self, module_hash: str) -> bool: ...

    def compile(self, module: bytes) -> str: ...

    def run(self, module_hash: str, io: TaskIO, limits: Limits) -> RunResult: ...


class InferEngine(Protocol):
    """Runs a model on a ``.npy`` tensor and returns the output as ``.npy`` bytes (synchronous)."""

    def models(self) -> list[str]: ...

    def providers(self) -> list[str]: ...

    def infer(self, model_hash: str, npy: bytes) -> bytes: ...


AdmissionHook = Callable[[Envelope], str | None]
"""Policy check on an opened task envelope: None admits, a string is the reason to refuse.
The zero-trust layer (membership certificates, grants) plugs in here."""
