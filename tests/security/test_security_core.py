"""Membership, grants, payload encryption and abuse limits (sans-IO)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgenode import wire
from edgenode.cli import main
from edgenode.errors import DecodeError, SignatureError
from edgenode.identity import Identity
from edgenode.security import (
    AbuseConfig,
    AbuseGuard,
    CapabilityRequest,
    LocalPolicy,
    MembershipView,
    RateSpec,
    Refused,
    decide,
    decrypt_from,
    encrypt_for,
    issue_certificate,
    issue_revocation,
)
from edgenode.tasks import SystemClock

ADMIN = Identity(bytes([1]) * 32)
MEMBER = Identity(bytes([2]) * 32)
STRANGER = Identity(bytes([3]) * 32)
OTHER_ADMIN = Identity(bytes([4]) * 32)
NOW = 1_000_000


def cert(
    member: Identity = MEMBER, roles: tuple[str, ...] = ("submitter",), admin: Identity = ADMIN, serial: int = 1
) -> bytes:
    return issue_certificate(admin, member.public_key, roles, serial=serial, now_ms=NOW, expires_ms=NOW + 10_000)


def reason(fn: object) -> str:
    with pytest.raises(Refused) as info:
        fn()  # type: ignore[operator]
    return info.value.reason


def test_valid_certificate_gives_member_with_roles() -> None:
    view = MembershipView(ADMIN.public_key)
    m = view.check(MEMBER.public_key, cert(), NOW + 1)
    assert m.peer_id == MEMBER.peer_id and m.has_role("submitter") and not m.has_role("executor")


def test_each_bad_certificate_has_its_reason() -> None:
    view = MembershipView(ADMIN.public_key)
    assert reason(lambda: view.check(STRANGER.public_key, None, NOW)) == "no_certificate"
    assert reason(lambda: view.check(STRANGER.public_key, b"junk", NOW)) == "bad_certificate"
    assert reason(lambda: view.check(MEMBER.public_key, cert(admin=OTHER_ADMIN), NOW)) == "wrong_swarm"
    assert reason(lambda: view.check(STRANGER.public_key, cert(), NOW)) == "wrong_holder"
    assert reason(lambda: view.check(MEMBER.public_key, cert(), NOW - 300_001)) == "not_yet_valid"
    assert reason(lambda: MembershipView(ADMIN.public_key, skew_ms=0).check(MEMBER.public_key, cert(), NOW - 1)) \
        == "not_yet_valid"
    assert reason(lambda: view.check(MEMBER.public_key, cert(), NOW + 10_000)) == "expired"


def test_revocation_applies_and_must_come_from_admin() -> None:
    view = MembershipView(ADMIN.public_key)
    assert reason(lambda: view.add_revocation(issue_revocation(OTHER_ADMIN, MEMBER.public_key, 1, now_ms=NOW))) == (
        "wrong_swarm"
    )
    view.check(MEMBER.public_key, cert(), NOW)
    view.add_revocation(issue_revocation(ADMIN, MEMBER.public_key, 1, now_ms=NOW))
    assert reason(lambda: view.check(MEMBER.public_key, cert(), NOW)) == "revoked"
    # a fresh certificate with a new serial is valid again
    view.check(MEMBER.public_key, cert(serial=2), NOW)


def test_remembered_certificate_checked_per_message() -> None:
    view = MembershipView(ADMIN.public_key)
    view.remember(MEMBER.public_key, cert())
    assert view.check_known(MEMBER.public_key, NOW).serial == 1
    assert reason(lambda: view.check_known(STRANGER.public_key, NOW)) == "no_certificate"


def test_forged_certificate_signature_is_refused() -> None:
    raw = wire.decode(cert())
    assert isinstance(raw, list)
    body = wire.decode(raw[2])
    assert isinstance(body, list) and isinstance(body[2], dict)
    body[2]["roles"] = ["admin"]
    raw[2] = wire.encode(body)
    view = MembershipView(ADMIN.public_key)
    assert reason(lambda: view.check(MEMBER.public_key, wire.encode(raw), NOW)) == "bad_certificate"


@given(st.binary(max_size=400))
def test_certificate_check_is_total(data: bytes) -> None:
    view = MembershipView(ADMIN.public_key)
    try:
        view.check(MEMBER.public_key, data, NOW)
    except Refused as exc:
        assert exc.reason in ("no_certificate", "bad_certificate", "wrong_swarm", "wrong_holder")


def test_grants_by_role_and_policy() -> None:
    policy = LocalPolicy(allowed_models=("m1",), data_dirs={"maps": "/srv/maps"}, max_fuel=1000)
    g = decide(CapabilityRequest(models=("m1",), fuel=10), ("submitter",), policy)
    assert g.models == ("m1",) and g.as_dict()["fuel"] == "10"
    assert reason(lambda: decide(CapabilityRequest(), ("executor",), policy)) == "role_not_allowed"
    assert reason(lambda: decide(CapabilityRequest(models=("m2",), fuel=1), ("submitter",), policy)) == (
        "capability_denied"
    )
    assert reason(lambda: decide(CapabilityRequest(data_dirs=("maps",), fuel=1), ("submitter",), policy)) == (
        "role_not_allowed"
    )
    assert decide(CapabilityRequest(data_dirs=("maps",), fuel=1), ("admin",), policy).data_dirs == ("maps",)
    assert reason(lambda: decide(CapabilityRequest(fuel=10_000), None, policy)) == "capability_denied"
    # open mode: no roles, only local limits
    assert decide(CapabilityRequest(fuel=5), None, policy).fuel == 5


def test_payload_encryption_round_trip_and_tamper() -> None:
    ct = encrypt_for(MEMBER, STRANGER.public_key, b"secret input")
    assert b"secret input" not in ct
    assert decrypt_from(STRANGER, MEMBER.public_key, ct) == b"secret input"
    assert decrypt_from(MEMBER, STRANGER.public_key, ct) == b"secret input"  # the submitter can read it too
    assert reason(lambda: decrypt_from(ADMIN, MEMBER.public_key, ct)) == "bad_ciphertext"  # a third party cannot
    tampered = bytearray(ct)
    tampered[-1] ^= 1
    assert reason(lambda: decrypt_from(STRANGER, MEMBER.public_key, bytes(tampered))) == "bad_ciphertext"


def test_rate_limit_and_penalty_ban() -> None:
    guard = AbuseGuard(AbuseConfig(limits={"task": RateSpec(rate=1.0, burst=3.0)}, ban_threshold=30.0, ban_s=10.0))
    assert [guard.allow("p", "task", 0.0) for _ in range(4)] == [True, True, True, False]
    assert guard.allow("p", "task", 1.0)  # refilled one token
    assert guard.counters["rate_limited_task"] == 1
    assert not guard.penalise("q", "invalid_signature", 0.0)
    assert not guard.penalise("q", "invalid_signature", 0.0)
    assert guard.penalise("q", "invalid_signature", 0.0)  # 30 points: banned
    assert not guard.allow("q", "task", 1.0)
    assert guard.banned(1.0) == ["q"]
    assert guard.allow("q", "task", 11.0)  # ban expired
    assert guard.allow("honest", "task", 0.0)


def test_swarm_cli_create_admit_revoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "admin"
    assert main(["swarm", "admit", "--home", str(home), MEMBER.peer_id]) == 1  # no admin key yet
    assert "swarm create" in capsys.readouterr().err
    assert main(["swarm", "create", "--home", str(home)]) == 0
    admin = Identity.load(home / "swarm-admin.key")
    assert main(["swarm", "admit", "--home", str(home), MEMBER.peer_id, "--role", "submitter", "--expires", "1h"]) == 0
    sealed = (tmp_path / f"{MEMBER.peer_id}.cert").read_bytes()
    view = MembershipView(admin.public_key)
    member = view.check(MEMBER.public_key, sealed, view_now := SystemClock().now_ms())
    assert member.roles == ("submitter",) and member.expires_ms > view_now
    assert main(["swarm", "revoke", "--home", str(home), MEMBER.peer_id]) == 0
    from edgenode.cli._swarm import read_revocations

    for rev in read_revocations(tmp_path / f"{MEMBER.peer_id}.revoke"):
        view.add_revocation(rev)
    assert reason(lambda: view.check(MEMBER.public_key, sealed, SystemClock().now_ms())) == "revoked"
    assert main(["swarm", "admit", "--home", str(home), "not-a-peer-id"]) == 1
    assert main(["swarm", "admit", "--home", str(home), MEMBER.peer_id, "--expires", "soon"]) == 1




def test_decoders_reject_cert_as_revocation() -> None:
    with pytest.raises(DecodeError):
        wire.open_as(wire.registry()["swarm.revoke"], cert())
    with pytest.raises((DecodeError, SignatureError)):
        wire.open_envelope(cert()[:-1])
