"""Capability grants: what a task may use, decided by role and local policy.

A task spec names the host capabilities it needs (:class:`CapabilityRequest`);
the executor's :class:`LocalPolicy` and the submitter's roles decide whether it
runs, and the :class:`Grant` that comes out is what the receipt records.

A request over any of the policy's limits (fuel, output, memory, wall-clock time) is
refused, never trimmed: the receipt's grant must cover what the spec asked. Below the
policy, the sandbox still clamps every limit to the node's own ceilings (``[sandbox]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._errors import Refused

__all__ = ["CapabilityRequest", "LocalPolicy", "Grant", "decide"]


@dataclass(frozen=True)
class CapabilityRequest:
    """What a task asks for."""

    models: tuple[str, ...] = ()
    """Model hashes (or names) the task calls through the host ``infer`` API."""
    data_dirs: tuple[str, ...] = ()
    """Names of read-only data directories the node exports."""
    max_output_bytes: int = 1 << 20
    fuel: int = 50_000_000
    memory_mb: int = 64
    """Linear memory the task asks for, in MiB."""
    timeout_ms: int = 5_000
    """Wall-clock time the task asks for, in milliseconds."""


@dataclass(frozen=True)
class LocalPolicy:
    """The executor's own limits; a task is refused if it asks for more."""

    submit_roles: tuple[str, ...] = ("submitter", "admin")
    """Roles allowed to submit tasks."""
    model_roles: tuple[str, ...] = ("submitter", "trainer", "admin")
    """Roles allowed to call models."""
    data_roles: tuple[str, ...] = ("admin",)
    """Roles allowed to read exported data directories."""
    allowed_models: tuple[str, ...] | None = None
    """Models tasks may call; ``None`` allows every model the node holds."""
    data_dirs: dict[str, str] = field(default_factory=dict)
    """Exported read-only directories: name -> local path."""
    max_output_bytes: int = 1 << 20
    max_fuel: int = 1_000_000_000
    max_memory_mb: int = 256
    """Largest linear memory a task may ask for, in MiB."""
    max_timeout_ms: int = 30_000
    """Longest wall-clock time a task may ask for, in milliseconds."""


@dataclass(frozen=True)
class Grant:
    """What the executor allowed; recorded in the receipt."""

    models: tuple[str, ...]
    data_dirs: tuple[str, ...]
    max_output_bytes: int
    fuel: int
    memory_mb: int = 64
    timeout_ms: int = 5_000

    def as_dict(self) -> dict[str, str]:
        """A flat string map, the form receipts carry."""
        return {
            "models": ",".join(self.models),
            "data_dirs": ",".join(self.data_dirs),
            "max_output_bytes": str(self.max_output_bytes),
            "fuel": str(self.fuel),
            "memory_mb": str(self.memory_mb),
            "timeout_ms": str(self.timeout_ms),
        }


def decide(request: CapabilityRequest, roles: tuple[str, ...] | None, policy: LocalPolicy) -> Grant:
    """Grant ``request`` to a submitter with ``roles`` under ``policy``, or raise Refused.

    ``roles`` is ``None`` in open mode (no swarm): every role check passes and
    only the node's own limits apply.
    """

    def allowed(needed: tuple[str, ...]) -> bool:
        return roles is None or "admin" in roles or any(r in needed for r in roles)

    if not allowed(policy.submit_roles):
        raise Refused("role_not_allowed", f"roles {list(roles or ())} may not submit tasks")
    if request.models:
        if not allowed(policy.model_roles):
            raise Refused("role_not_allowed", "role may not call models")
        if policy.allowed_models is not None:
            denied = [m for m in request.models if m not in policy.allowed_models]
            if denied:
                raise Refused("capability_denied", f"models not allowed here: {denied}")
    if request.data_dirs:
        if not allowed(policy.data_roles):
            raise Refused("role_not_allowed", "role may not read data directories")
        unknown = [d for d in request.data_dirs if d not in policy.data_dirs]
        if unknown:
            raise Refused("capability_denied", f"no such data directory: {unknown}")
    if request.max_output_bytes > policy.max_output_bytes:
        raise Refused("capability_denied", f"output cap {request.max_output_bytes} > {policy.max_output_bytes}")
    if request.fuel > policy.max_fuel:
        raise Refused("capability_denied", f"fuel {request.fuel} > {policy.max_fuel}")
    if request.memory_mb > policy.max_memory_mb:
        raise Refused("capability_denied", f"memory {request.memory_mb} MiB > {policy.max_memory_mb} MiB")
    if request.timeout_ms > policy.max_timeout_ms:
        raise Refused("capability_denied", f"timeout {request.timeout_ms} ms > {policy.max_timeout_ms} ms")
    return Grant(tuple(request.models), tuple(request.data_dirs), request.max_output_bytes, request.fuel,
                 request.memory_mb, request.timeout_ms)
