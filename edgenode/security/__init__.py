"""Zero-trust swarm: membership certificates, capability grants, payload encryption, abuse limits."""

from ._abuse import PENALTIES, AbuseConfig, AbuseGuard, RateSpec
from ._config import load_guard, policy_from_config, read_sealed_list
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
from ._revocation_client import Delivery, push_revocations
from ._swarm import (
    EVIDENCE_TOPIC,
    MEMBER_PROTOCOL,
    MEMBER_TOPIC,
    REVOCATION_TOPIC,
    Evidence,
    MemberHello,
    MemberRefused,
    SwarmGuard,
)
from ._tasks import (
    ENC_BOX,
    POLICY_DATA_DIRS,
    POLICY_ENC,
    POLICY_LEDGER_PAYLOAD,
    capability_request,
    check_grant,
    is_encrypted,
)

__all__ = [
    "ENC_BOX",
    "EVIDENCE_TOPIC",
    "MEMBER_PROTOCOL",
    "MEMBER_TOPIC",
    "POLICY_DATA_DIRS",
    "POLICY_ENC",
    "POLICY_LEDGER_PAYLOAD",
    "REVOCATION_TOPIC",
    "Evidence",
    "MemberHello",
    "MemberRefused",
    "SwarmGuard",
    "capability_request",
    "check_grant",
    "is_encrypted",
    "load_guard",
    "policy_from_config",
    "read_sealed_list",
    "PENALTIES",
    "REASONS",
    "ROLES",
    "AbuseConfig",
    "AbuseGuard",
    "CapabilityRequest",
    "Delivery",
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
    "push_revocations",
    "issue_certificate",
    "issue_revocation",
]
