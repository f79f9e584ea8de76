"""Errors of the sandbox: one root, local and remote faults split."""

from __future__ import annotations

from ..errors import EdgenodeError, LocalError, RemoteError
from ._types import Status

__all__ = ["SandboxError", "InvalidModule", "CompileTimeout", "UnknownModule", "SandboxClosed"]


class SandboxError(EdgenodeError):
    """Root of every error the sandbox raises on purpose."""


class InvalidModule(SandboxError, RemoteError):
    """Module bytes that are not valid WebAssembly, or not a WASI command (no ``_start``).

    A remote fault: module bytes normally come from a peer. ``status`` is the run status a
    task that names this module ends with.
    """

    status: Status = Status.INVALID_MODULE


class CompileTimeout(InvalidModule):
    """Compiling the module took longer than the node's limit; the compiler was killed."""

    status: Status = Status.COMPILE_TIMEOUT


class UnknownModule(SandboxError, LocalError):
    """``run``/``prepare`` named a module hash that was never compiled here."""


class SandboxClosed(SandboxError, LocalError):
    """The sandbox was used after ``close()``."""
