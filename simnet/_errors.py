"""Errors of the simulator."""

from __future__ import annotations

from edgenode.errors import LocalError

__all__ = ["SimnetError", "ScenarioError"]


class SimnetError(LocalError):
    """Root of errors raised by simnet on purpose (a bad run set-up is a local fault)."""


class ScenarioError(SimnetError):
    """A scenario file that does not parse or validate; the message names the bad key."""
