"""Refusals of the zero-trust layer, each with a machine-readable reason."""

from __future__ import annotations

from ..errors import LocalError, RemoteError

__all__ = ["SecurityError", "Refused", "PolicyError", "REASONS"]

REASONS = (
    "no_certificate",
    "bad_certificate",
    "wrong_swarm",
    "not_yet_valid",
    "expired",
    "revoked",
    "wrong_holder",
    "role_not_allowed",
    "capability_denied",
    "rate_limited",
    "penalised",
    "replayed",
    "bad_ciphertext",
)
"""Every reason a :class:`Refused` may carry; metrics are labelled by these."""


class SecurityError(RemoteError):
    """Root of zero-trust refusals caused by a peer."""


class Refused(SecurityError):
    """A peer's connection, message or task is refused; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown refusal reason {reason!r}")
        self.reason = reason
        self.detail = detail
        super().__init__(f"refused ({reason}){': ' + detail if detail else ''}")


class PolicyError(LocalError):
    """A malformed local policy or swarm file."""
