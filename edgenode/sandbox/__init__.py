"""The WASM sandbox: untrusted WASI tasks in wasmtime under hard limits, with a host API for models."""

from ._asyncify import have_wasm_opt
from ._cache import is_sha256_hex as is_module_hash
from ._checkpoint import Checkpointing
from ._classify import Outcome, classify
from ._errors import CompileTimeout, InvalidModule, SandboxClosed, SandboxError, UnknownModule
from ._host import (
    ERR_BOUNDS,
    ERR_FAILED,
    ERR_INPUT,
    ERR_NO_MODEL,
    ERR_OUTPUT_TOO_SMALL,
    HOST_MODULE,
)
from ._sandbox import PreparedRun, Sandbox
from ._snapshot import InvalidSnapshot, Snapshot, SnapshotFault, SnapshotState, memory_image, open_snapshot
from ._types import HostModels, Limits, RunResult, SandboxConfig, Status, TaskIO

__all__ = [
    "Sandbox",
    "is_module_hash",
    "PreparedRun",
    "SandboxConfig",
    "Limits",
    "TaskIO",
    "Status",
    "RunResult",
    "HostModels",
    "Outcome",
    "classify",
    "SandboxError",
    "InvalidModule",
    "CompileTimeout",
    "UnknownModule",
    "SandboxClosed",
    "HOST_MODULE",
    "ERR_NO_MODEL",
    "ERR_INPUT",
    "ERR_OUTPUT_TOO_SMALL",
    "ERR_FAILED",
    "ERR_BOUNDS",
    "Checkpointing",
    "Snapshot",
    "SnapshotState",
    "SnapshotFault",
    "InvalidSnapshot",
    "open_snapshot",
    "memory_image",
    "have_wasm_opt",
]
