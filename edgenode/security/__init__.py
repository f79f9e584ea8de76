"""Zero-trust swarm: membership certificates, capability grants, payload encryption, abuse limits."""

from ._abuse import PENALTIES, AbuseConfig, AbuseGuard, RateSpec
from ._errors import REASONS, PolicyError, Refused, SecurityError
from ._membership import (
    ROLES,
    Member,
    MembershipCert,
    MembershipView,
    Revocation,
    issue_certificate,
    issue_revocation,
)
from ._payload import decrypt_from, encrypt_for
from ._policy import CapabilityRequest, Grant, LocalPolicy, decide

__all__ = [
    "PENALTIES",
    "REASONS",
    "ROLES",
    "AbuseConfig",
    "AbuseGuard",
    "CapabilityRequest",
    "Grant",
    "LocalPolicy",
    "Member",
    "MembershipCert",
    "MembershipView",
    "PolicyError",
    "RateSpec",
    "Refused",
    "Revocation",
    "SecurityError",
    "decide",
    "decrypt_from",
    "encrypt_for",
    "issue_certificate",
    "issue_revocation",
]
