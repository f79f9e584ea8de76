"""Task specs under the zero-trust layer: the capabilities a spec asks for, the grant a receipt carries.

A spec asks with its own fields (``models``, ``limits.fuel``,
``limits.max_output_bytes``) plus ``policy["data_dirs"]`` (comma-separated names
of read-only directories the node exports).  ``policy["enc"] == ENC_BOX``
marks an input encrypted with :func:`encrypt_for` to the executor; the
executor then encrypts the output back to the submitter.
"""

from __future__ import annotations

from ..protocol import TaskSpec
from ._errors import Refused
from ._policy import CapabilityRequest

__all__ = [
    "ENC_BOX",
    "POLICY_ENC",
    "POLICY_DATA_DIRS",
    "POLICY_LEDGER_PAYLOAD",
    "capability_request",
    "check_grant",
    "is_encrypted",
]

POLICY_ENC = "enc"
"""Spec policy key naming the payload encryption."""
POLICY_LEDGER_PAYLOAD = "ledger_payload"
"""Spec policy key: ``"1"`` asks the executor to keep the plaintext input and output in its ledger."""
POLICY_DATA_DIRS = "data_dirs"
"""Spec policy key: comma-separated names of read-only data directories the task needs."""
ENC_BOX = "box1"
"""NaCl Box between the submitter's and the executor's keys (Ed25519 converted to Curve25519)."""


def _names(text: str) -> tuple[str, ...]:
    return tuple(n for n in (p.strip() for p in text.split(",")) if n)


def capability_request(spec: TaskSpec) -> CapabilityRequest:
    """What ``spec`` asks of the host."""
    return CapabilityRequest(
        models=tuple(spec.models),
        data_dirs=_names(spec.policy.get(POLICY_DATA_DIRS, "")),
        max_output_bytes=spec.limits.max_output_bytes,
        fuel=spec.limits.fuel,
        memory_mb=spec.limits.memory_mb,
        timeout_ms=spec.limits.timeout_ms,
    )


def is_encrypted(spec: TaskSpec) -> bool:
    """True when the spec's input is encrypted; Refused for an unknown scheme."""
    enc = spec.policy.get(POLICY_ENC, "")
    if enc and enc != ENC_BOX:
        raise Refused("bad_ciphertext", f"unknown payload encryption {enc!r}")
    return bool(enc)


def check_grant(spec: TaskSpec, grants: dict[str, str]) -> None:
    """Raise Refused("capability_denied") unless ``grants`` (from a receipt) cover what ``spec`` asked."""
    want = capability_request(spec)
    try:
        fuel = int(grants.get("fuel", "-1"))
        out = int(grants.get("max_output_bytes", "-1"))
    except ValueError as exc:
        raise Refused("capability_denied", "malformed grant") from exc
    models = set(_names(grants.get("models", "")))
    dirs = set(_names(grants.get("data_dirs", "")))
    if fuel < want.fuel or out < want.max_output_bytes:
        raise Refused("capability_denied", "the receipt grants less fuel or output than asked")
    if not set(want.models) <= models or not set(want.data_dirs) <= dirs:
        raise Refused("capability_denied", "the receipt does not grant the models or directories asked")
