"""Units of swarm mode: config, policy files, grants, payload markers, hello/evidence messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgenode import wire
from edgenode.clock import ManualClock
from edgenode.config import NodeConfig, PolicySection, SwarmSection, load_config
from edgenode.identity import Identity
from edgenode.protocol import TaskLimits, TaskSpec
from edgenode.scheduler import TokenBucket
from edgenode.security import (
    ENC_BOX,
    POLICY_DATA_DIRS,
    POLICY_ENC,
    Evidence,
    MemberHello,
    PolicyError,
    Refused,
    capability_request,
    check_grant,
    decide,
    is_encrypted,
    issue_certificate,
    load_guard,
    policy_from_config,
    read_sealed_list,
)

ADMIN = Identity(bytes(range(32)))
MEMBER = Identity(bytes(range(1, 33)))


def spec(policy: dict[str, str] | None = None, models: tuple[str, ...] = (), fuel: int = 1000) -> TaskSpec:
    return TaskSpec("t", "wasm", "m", b"", (), TaskLimits(fuel=fuel), (), models, b"n" * 16, 0, 1, policy=policy or {})


def test_config_swarm_section(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[swarm]\nswarm_id = "x"\nrevocations = ["a.revoke"]\n'
        '[swarm.policy]\nsubmit_roles = ["admin"]\ndata_dirs = ["maps=/tmp"]\nmax_fuel = 5\n'
    )
    cfg = load_config(tmp_path)
    assert cfg.swarm.swarm_id == "x" and cfg.swarm.revocations == ("a.revoke",)
    assert cfg.swarm.policy.submit_roles == ("admin",) and cfg.swarm.policy.max_fuel == 5
    assert NodeConfig().swarm == SwarmSection()


def test_policy_from_config(tmp_path: Path) -> None:
    pol = policy_from_config(PolicySection(data_dirs=(f"maps={tmp_path}",), allowed_models=("abc",)))
    assert pol.data_dirs == {"maps": str(tmp_path)} and pol.allowed_models == ("abc",)
    assert policy_from_config(PolicySection()).allowed_models is None
    with pytest.raises(PolicyError, match="NAME=PATH"):
        policy_from_config(PolicySection(data_dirs=("nopath",)))
    with pytest.raises(PolicyError, match="not a directory"):
        policy_from_config(PolicySection(data_dirs=(f"x={tmp_path / 'missing'}",)))


def test_load_guard(tmp_path: Path) -> None:
    assert load_guard(MEMBER, tmp_path, SwarmSection(), ManualClock(0)) is None
    with pytest.raises(PolicyError, match="certificate"):
        load_guard(MEMBER, tmp_path, SwarmSection(swarm_id=ADMIN.peer_id), ManualClock(0))
    (tmp_path / "swarm.cert").write_bytes(issue_certificate(ADMIN, MEMBER.public_key, ("executor",), serial=1,
                                                            now_ms=0))
    guard = load_guard(MEMBER, tmp_path, SwarmSection(swarm_id=ADMIN.peer_id), ManualClock(10))
    assert guard is not None and guard.swarm_id == ADMIN.peer_id and guard.me.roles == ("executor",)
    with pytest.raises(PolicyError, match="another swarm"):
        load_guard(MEMBER, tmp_path, SwarmSection(swarm_id=MEMBER.peer_id), ManualClock(10))
    with pytest.raises(PolicyError, match="own certificate"):
        load_guard(ADMIN, tmp_path, SwarmSection(swarm_id=ADMIN.peer_id), ManualClock(10))  # names another key


def test_read_sealed_list(tmp_path: Path) -> None:
    blobs = [b"one", b"", b"three" * 10]
    (tmp_path / "r").write_bytes(b"".join(len(b).to_bytes(4, "big") + b for b in blobs))
    assert read_sealed_list(tmp_path / "r") == blobs
    (tmp_path / "bad").write_bytes(b"\x00\x00\x00\x09abc")
    with pytest.raises(PolicyError, match="truncated"):
        read_sealed_list(tmp_path / "bad")


@given(st.binary(max_size=64))
def test_read_sealed_list_is_total(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("r") / "f"
    path.write_bytes(data)
    try:
        out = read_sealed_list(path)
    except PolicyError:
        return
    assert b"".join(len(b).to_bytes(4, "big") + b for b in out) == data


def test_capability_request_and_grants() -> None:
    s = spec({POLICY_DATA_DIRS: "maps, logs"}, models=("m1",), fuel=500)
    req = capability_request(s)
    assert req.data_dirs == ("maps", "logs") and req.models == ("m1",) and req.fuel == 500
    grant = {"models": "m1", "data_dirs": "maps,logs", "fuel": "500", "max_output_bytes": str(1 << 20)}
    check_grant(s, grant)
    for bad in ({**grant, "fuel": "499"}, {**grant, "models": ""}, {**grant, "data_dirs": "maps"}, {},
                {**grant, "fuel": "lots"}):
        with pytest.raises(Refused) as info:
            check_grant(s, bad)
        assert info.value.reason == "capability_denied"


def test_decide_grant_round_trips_through_check_grant() -> None:
    from edgenode.security import LocalPolicy

    s = spec(models=("m1",), fuel=10)
    grant = decide(capability_request(s), ("submitter",), LocalPolicy())
    check_grant(s, grant.as_dict())


def test_is_encrypted() -> None:
    assert not is_encrypted(spec())
    assert is_encrypted(spec({POLICY_ENC: ENC_BOX}))
    with pytest.raises(Refused) as info:
        is_encrypted(spec({POLICY_ENC: "rot13"}))
    assert info.value.reason == "bad_ciphertext"


@given(st.binary(max_size=300), st.text(max_size=20), st.binary(max_size=200), st.integers(0, 2**62))
def test_hello_and_evidence_round_trip(cert: bytes, offence: str, proof: bytes, ms: int) -> None:
    for msg in (MemberHello(cert), Evidence(MEMBER.public_key, offence, proof, ms)):
        env, back = wire.open_as(type(msg), wire.seal(ADMIN, msg))
        assert back == msg and env.author == ADMIN.public_key


def test_token_bucket_cost() -> None:
    b = TokenBucket(rate=1.0, burst=3.0, now_ms=0)
    assert b.take(0, cost=2.5) and not b.take(0, cost=1.0)
    assert b.take(500, cost=1.0)  # 0.5 + 0.5 refilled
