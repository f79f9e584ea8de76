"""The exception root of the ``federated`` package.

Local faults (bad arguments, a misconfigured strategy) and remote faults (an
update from a peer that does not decode, is forged or has the wrong shape) are
split so that callers penalise peers for remote faults only.
"""

from __future__ import annotations

__all__ = [
    "FederatedError",
    "FederatedLocalError",
    "FederatedRemoteError",
    "BadUpdate",
    "AggregationFailed",
    "FlowerRunFailed",
]


class FederatedError(Exception):
    """Root of every error raised by ``federated`` on purpose."""


class FederatedLocalError(FederatedError):
    """A fault of this process or its user: bad arguments, bad shapes, bad config."""


class FederatedRemoteError(FederatedError):
    """A fault of a peer: malformed, forged or mismatched remote input."""


class BadUpdate(FederatedRemoteError):
    """A model update from a peer was rejected.

    ``reason`` is one of ``"decode"``, ``"signature"``, ``"model"``, ``"shape"``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class AggregationFailed(FederatedLocalError):
    """A Flower strategy could not aggregate the updates it was given."""


class FlowerRunFailed(FederatedLocalError):
    """A Flower deployment (SuperLink/SuperNode/``flwr run``) did not produce a result."""
