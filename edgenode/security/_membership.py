"""Swarm membership: an admin key signs certificates and revocations.

A swarm is named by its admin's public key.  A member presents a
:class:`MembershipCert` (sealed by the admin) naming its own key, a role and a
validity window; a :class:`Revocation` (also sealed by the admin) withdraws a
certificate by serial.  :class:`MembershipView` is sans-IO: it checks a peer's
certificate at a given ``now`` and remembers revocations it has seen.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import wire
from ..errors import DecodeError, SignatureError
from ..identity import Identity, peer_id_from_public_key
from ._errors import Refused

__all__ = [
    "ROLES",
    "MembershipCert",
    "Revocation",
    "issue_certificate",
    "issue_revocation",
    "MembershipView",
    "Member",
    "DEFAULT_CERT_SKEW_MS",
]

ROLES = ("executor", "submitter", "trainer", "admin")
"""Roles a certificate may grant.  ``admin`` may do everything."""
DEFAULT_CERT_SKEW_MS = 300_000
"""Clock skew tolerated on a certificate's ``not_before_ms`` (a member's clock may run 5 minutes ahead)."""


@wire.message("swarm.cert", 1)
@dataclass(frozen=True)
class MembershipCert:
    """The admin's statement that ``member`` belongs to the swarm in ``roles``."""

    swarm: bytes
    """The swarm admin's public key (names the swarm)."""
    member: bytes
    """The member's Ed25519 public key."""
    roles: tuple[str, ...]
    serial: int
    """Unique per swarm; revocations name it."""
    not_before_ms: int
    expires_ms: int
    """0 means no expiry."""

    def __post_init__(self) -> None:
        bad = [r for r in self.roles if r not in ROLES]
        if bad or not self.roles:
            raise ValueError(f"bad roles {list(self.roles)}")
        if len(self.swarm) != 32 or len(self.member) != 32:
            raise ValueError("keys must have 32 bytes")


@wire.message("swarm.revoke", 1)
@dataclass(frozen=True)
class Revocation:
    """The admin withdraws certificate ``serial`` from ``member``."""

    swarm: bytes
    member: bytes
    serial: int
    issued_ms: int
    reason: str = ""


@dataclass(frozen=True)
class Member:
    """A peer whose certificate checked out."""

    peer_id: str
    roles: tuple[str, ...]
    serial: int
    expires_ms: int

    def has_role(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles


def issue_certificate(
    admin: Identity,
    member_public_key: bytes,
    roles: tuple[str, ...],
    *,
    serial: int,
    now_ms: int,
    expires_ms: int = 0,
) -> bytes:
    """A sealed certificate (bytes to hand to the member)."""
    cert = MembershipCert(admin.public_key, member_public_key, tuple(roles), serial, now_ms, expires_ms)
    return wire.seal(admin, cert)


def issue_revocation(admin: Identity, member_public_key: bytes, serial: int, *, now_ms: int, reason: str = "") -> bytes:
    """A sealed revocation, to be gossiped to the swarm."""
    return wire.seal(admin, Revocation(admin.public_key, member_public_key, serial, now_ms, reason))


class MembershipView:
    """What one node knows of its swarm: the admin key and the revocations seen.

    A certificate is accepted from ``skew_ms`` before its ``not_before_ms``: the admin's
    clock and ours need not agree to the millisecond for a fresh certificate to work.
    """

    def __init__(self, swarm: bytes, skew_ms: int = DEFAULT_CERT_SKEW_MS) -> None:
        if len(swarm) != 32:
            raise ValueError("a swarm is named by a 32-byte admin key")
        if skew_ms < 0:
            raise ValueError("the tolerated clock skew cannot be negative")
        self.swarm = swarm
        self.skew_ms = skew_ms
        self._revoked: set[tuple[bytes, int]] = set()
        self._certs: dict[bytes, bytes] = {}

    @property
    def swarm_id(self) -> str:
        return peer_id_from_public_key(self.swarm)

    def add_revocation(self, sealed: bytes) -> Revocation:
        """Record a sealed revocation; Refused if it is not the admin's."""
        try:
            env, rev = wire.open_as(Revocation, sealed)
        except (DecodeError, SignatureError) as exc:
            raise Refused("bad_certificate", f"revocation does not verify: {exc}") from exc
        if env.author != self.swarm or rev.swarm != self.swarm:
            raise Refused("wrong_swarm", "revocation not signed by this swarm's admin")
        self._revoked.add((rev.member, rev.serial))
        return rev

    def is_revoked(self, member: bytes, serial: int) -> bool:
        return (member, serial) in self._revoked

    def remember(self, peer_key: bytes, sealed_cert: bytes) -> None:
        """Keep the certificate a connected peer presented, for per-message checks."""
        self._certs[peer_key] = sealed_cert

    def certificate_of(self, peer_key: bytes) -> bytes | None:
        return self._certs.get(peer_key)

    def check(self, peer_key: bytes, sealed_cert: bytes | None, now_ms: int) -> Member:
        """Check a certificate presented by ``peer_key``; return the member or raise Refused."""
        if not sealed_cert:
            raise Refused("no_certificate", f"peer {peer_id_from_public_key(peer_key)} presented no certificate")
        try:
            env, cert = wire.open_as(MembershipCert, sealed_cert)
        except (DecodeError, SignatureError) as exc:
            raise Refused("bad_certificate", str(exc)) from exc
        if env.author != self.swarm or cert.swarm != self.swarm:
            raise Refused("wrong_swarm", f"certificate is for swarm {peer_id_from_public_key(cert.swarm)}")
        if cert.member != peer_key:
            raise Refused("wrong_holder", "certificate names another key")
        if now_ms + self.skew_ms < cert.not_before_ms:
            raise Refused("not_yet_valid", f"valid from {cert.not_before_ms} (skew tolerated: {self.skew_ms} ms)")
        if cert.expires_ms and now_ms >= cert.expires_ms:
            raise Refused("expired", f"expired at {cert.expires_ms}")
        if self.is_revoked(cert.member, cert.serial):
            raise Refused("revoked", f"certificate serial {cert.serial} was revoked")
        return Member(peer_id_from_public_key(peer_key), cert.roles, cert.serial, cert.expires_ms)

    def check_known(self, peer_key: bytes, now_ms: int) -> Member:
        """Check the certificate remembered for ``peer_key`` (every signed message does this)."""
        return self.check(peer_key, self._certs.get(peer_key), now_ms)
