"""Errors of the task protocol, as the submitter sees them."""

from __future__ import annotations

from ..errors import EdgenodeError, LocalError, RemoteError

__all__ = ["TaskError", "NoExecutor", "TaskTimeout", "SpecExpired", "InvalidReceipt", "NoMajority"]


class TaskError(EdgenodeError):
    """Root of the errors a submitted task can end with."""


class NoExecutor(TaskError, LocalError):
    """No node can or will take the task: none capable, all busy, or an offer went unanswered."""


class TaskTimeout(TaskError, LocalError):
    """The task's deadline passed before a verified result arrived."""


class SpecExpired(TaskError, LocalError):
    """Executors refused the spec as expired (check this machine's clock)."""


class InvalidReceipt(TaskError, RemoteError):
    """A receipt whose signature, ledger entry or chain link does not verify, or that does not match its task."""


class NoMajority(TaskError, RemoteError):
    """With redundancy, the executors' output hashes never reached a majority."""
