"""Swarm mode from the node's configuration and home directory."""

from __future__ import annotations

from pathlib import Path

from ..clock import Clock
from ..config import PolicySection, SwarmSection, TablesSection
from ..errors import LocalError
from ..identity import Identity, public_key_from_peer_id
from ._abuse import AbuseConfig, AbuseGuard
from ._errors import PolicyError
from ._policy import LocalPolicy
from ._swarm import SwarmGuard

__all__ = ["policy_from_config", "load_guard", "read_sealed_list"]


def policy_from_config(sec: PolicySection) -> LocalPolicy:
    """The :class:`LocalPolicy` a ``[swarm.policy]`` table describes."""
    dirs: dict[str, str] = {}
    for item in sec.data_dirs:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise PolicyError(f"[swarm.policy] data_dirs: expected NAME=PATH, got {item!r}")
        if not Path(path).is_dir():
            raise PolicyError(f"[swarm.policy] data_dirs: {path} is not a directory")
        dirs[name] = path
    return LocalPolicy(
        submit_roles=sec.submit_roles,
        model_roles=sec.model_roles,
        data_roles=sec.data_roles,
        allowed_models=sec.allowed_models or None,
        data_dirs=dirs,
        max_output_bytes=sec.max_output_bytes,
        max_fuel=sec.max_fuel,
        max_memory_mb=sec.max_memory_mb,
        max_timeout_ms=sec.max_timeout_ms,
    )


def read_sealed_list(path: Path) -> list[bytes]:
    """Sealed messages stored as ``u32 big-endian length | bytes`` records (revocation files)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read {path}: {exc.strerror}") from exc
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise PolicyError(f"{path}: truncated record")
        n = int.from_bytes(data[pos : pos + 4], "big")
        if pos + 4 + n > len(data):
            raise PolicyError(f"{path}: truncated record")
        out.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out


def load_guard(
    identity: Identity,
    home: Path,
    sec: SwarmSection,
    clock: Clock,
    *,
    cert: Path | None = None,
    tables: TablesSection | None = None,
) -> SwarmGuard | None:
    """The node's :class:`SwarmGuard` per ``[swarm]``, or None in open mode (no swarm id, no cert given)."""
    if not sec.swarm_id and cert is None:
        return None
    path = cert if cert is not None else (home / sec.cert)
    try:
        sealed = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"swarm mode needs this node's certificate at {path} ({exc.strerror}); "
                          "get one with `edgenode swarm admit`") from exc
    try:
        swarm = public_key_from_peer_id(sec.swarm_id) if sec.swarm_id else None
    except LocalError as exc:
        raise PolicyError(f"[swarm] swarm_id is not a peer id: {sec.swarm_id!r}") from exc
    revocations = [r for f in sec.revocations for r in read_sealed_list(home / f)]
    tab = tables or TablesSection()
    return SwarmGuard(identity, sealed, clock, swarm=swarm, policy=policy_from_config(sec.policy),
                      revocations=revocations, abuse=AbuseGuard(AbuseConfig(max_peers=tab.peers)),
                      max_evidence=tab.evidence, cert_skew_ms=tab.cert_skew_ms)
