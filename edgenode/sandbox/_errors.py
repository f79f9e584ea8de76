"""Errors of the sandbox: one root, local and remote faults split."""

from __future__ import annotations

from ..errors import EdgenodeError, LocalError, RemoteError

__all__ = ["SandboxError", "InvalidModule", "UnknownModule", "SandboxClosed"]


class SandboxError(EdgenodeError):
    """Root of every error the sandbox raises on purpose."""


class InvalidModule(SandboxError, RemoteError):
    """Module bytes that are not valid WebAssembly, or not a WASI command (no ``_start``).

    A remote fault: module bytes normally come from a peer.
    """


class UnknownModule(SandboxError, LocalError):
    """``run``/``prepare`` named a module hash that was never compiled here."""


class SandboxClosed(SandboxError, LocalError):
    """The sandbox was used after ``close()``."""
