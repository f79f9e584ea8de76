"""Swarm mode end to end: certified nodes over memnet with a real sandbox and real SQLite ledgers."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from edgenode import wire
from edgenode.errors import EdgenodeError
from edgenode.identity import Identity
from edgenode.net import NetError
from edgenode.node import Node
from edgenode.protocol import (
    ADVERT_TOPIC,
    PAYLOAD_KIND,
    TASK_PROTOCOL,
    InvalidReceipt,
    Receipt,
    Rejected,
    TaskLimits,
    TaskPayload,
    TaskRecord,
    TaskSpec,
)
from edgenode.reasons import Reason
from edgenode.security import (
    ENC_BOX,
    EVIDENCE_TOPIC,
    POLICY_ENC,
    REVOCATION_TOPIC,
    AbuseConfig,
    Evidence,
    LocalPolicy,
    RateSpec,
    issue_revocation,
)
from edgenode.tasks import Submitter, TaskRequest

from .conftest import Swarm, SwarmFactory, now_ms

pytestmark = pytest.mark.timeout(60)


def req(module: str, data: bytes, **kw: object) -> TaskRequest:
    return TaskRequest("wasm", module, input=data, deadline_ms=10_000, **kw)  # type: ignore[arg-type]


def refusals(node: Node, reason: str) -> float:
    return node.metrics.registry.get_sample_value("edgenode_security_refusals_total", {"reason": reason}) or 0.0


def task_refusals(node: Node, reason: str) -> float:
    return node.metrics.registry.get_sample_value("edgenode_tasks_refused_total", {"reason": reason}) or 0.0


def spec_for(sub: Submitter, module: str, data: bytes, task_id: str = "", nonce: bytes = b"",
             policy: dict[str, str] | None = None) -> TaskSpec:
    now = sub.clock.now_ms()
    return TaskSpec(task_id or os.urandom(8).hex(), "wasm", module, data, (), TaskLimits(), (), (),
                    nonce or os.urandom(16), now, now + 10_000, policy=policy or {})


async def raw_task(sub: Submitter, node: Node, spec: TaskSpec) -> object:
    resp = await sub.transport.request(node.peer_id, TASK_PROTOCOL, wire.seal(sub.signer, spec), timeout=10)
    return wire.open_envelope(resp).message


async def honest_round(sw: Swarm, sub: Submitter, module: str, n: int = 4) -> None:
    outs = await asyncio.gather(*(sub.submit(req(module, f"job {i}".encode())) for i in range(n)))
    assert [o.output for o in outs] == [f"job {i}".encode() for i in range(n)]


async def test_member_task_is_encrypted_granted_and_hashed(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    sw = await swarm_factory(2)
    sub = await sw.client(("submitter",))
    module = sub.add_module(cat_wasm)
    out = await sub.submit(req(module, b"secret input"))
    assert out.ok and out.output == b"secret input"
    (vr,) = out.receipts
    grants = vr.receipt.grants
    assert grants["fuel"] == str(TaskLimits().fuel) and grants["models"] == ""
    # on the wire the output is ciphertext; the receipt's hash names the plaintext
    sealed = wire.open_envelope(vr.sealed).message
    assert isinstance(sealed, Receipt) and b"secret input" not in sealed.output
    assert sealed.output_hash == hashlib.sha256(b"secret input").hexdigest()
    # the ledger keeps hashes only
    node = sw.nodes[0] if sw.nodes[0].peer_id == out.executor else sw.nodes[1]
    stored = await node.store.get(node.identity.public_key, vr.entry.seq)
    assert stored is not None and b"secret input" not in stored.to_bytes()
    record = wire.from_bytes(TaskRecord, stored.body or b"")
    assert record.input_hash == hashlib.sha256(b"secret input").hexdigest()
    assert await node.store.get(node.identity.public_key, vr.entry.seq + 1) is None  # no payload entry
    # unless the spec asks for it and the policy grants it ([ledger] payload_roles, default admin)
    keeper = await sw.client(("submitter", "admin"))
    keeper.add_module(cat_wasm)
    out2 = await keeper.submit(req(module, b"keep me", ledger_payload=True))
    node = sw.nodes[0] if sw.nodes[0].peer_id == out2.executor else sw.nodes[1]
    await node.chain.flush()
    seq = out2.receipts[0].entry.seq
    kept = await node.store.get(node.identity.public_key, seq + 1)
    assert kept is not None and kept.kind == PAYLOAD_KIND
    payload = wire.from_bytes(TaskPayload, kept.body or b"")
    assert (payload.task_id, payload.input, payload.output) == (out2.task_id, b"keep me", b"keep me")


async def test_stranger_is_refused_and_disconnected(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    sw = await swarm_factory(2)
    member = await sw.client(("submitter",))
    module = member.add_module(cat_wasm)
    stranger = await sw.client(None, join=False)
    stranger.add_module(cat_wasm)
    node = sw.nodes[0]
    await stranger.transport.connect(node.transport.listen_addrs[0])
    msg = await raw_task(stranger, node, spec_for(stranger, module, b"let me in"))
    assert isinstance(msg, Rejected) and msg.reason == Reason.FORBIDDEN and "no_certificate" in msg.detail
    assert node.guard is not None
    await node.guard.settle()
    assert stranger.transport.peer_id not in node.transport.peers()
    assert refusals(node, "no_certificate") >= 1 and task_refusals(node, "no_certificate") == 1
    assert node.chain.height == 0
    # a member of another swarm: wrong_swarm
    other_admin = Identity.generate()
    ident = Identity.generate()
    foreign = await sw.client(cert=sw.cert(ident, ("submitter",), admin=other_admin), ident=ident, join=False)
    await foreign.transport.connect(node.transport.listen_addrs[0])
    msg = await raw_task(foreign, node, spec_for(foreign, module, b"wrong swarm"))
    assert isinstance(msg, Rejected) and msg.reason == Reason.FORBIDDEN and "wrong_swarm" in msg.detail
    # the honest workload goes on
    await honest_round(sw, member, module)


async def test_revoked_member_is_refused(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    sw = await swarm_factory(2)
    honest = await sw.client(("submitter",))
    module = honest.add_module(cat_wasm)
    ident = Identity.generate()
    serial_cert = sw.cert(ident, ("submitter",))
    rogue = await sw.client(cert=serial_cert, ident=ident)
    rogue.add_module(cat_wasm)
    out = await rogue.submit(req(module, b"before"))
    assert out.ok
    a, b = sw.nodes
    sub_b = b.transport.subscribe(REVOCATION_TOPIC)
    sealed = issue_revocation(sw.admin, ident.public_key, sw.serial, now_ms=now_ms(), reason="stolen laptop")
    assert a.guard is not None and b.guard is not None
    await a.guard.revoke(sealed)
    async with asyncio.timeout(10):
        got = await anext(sub_b)  # delivered only after b's validator applied it
    assert got.data == sealed
    for node in (a, b):
        with pytest.raises(EdgenodeError, match="revoked"):
            node.guard.check_known(ident.peer_id)  # type: ignore[union-attr]
    heights = [n.chain.height for n in sw.nodes]
    msg = await raw_task(rogue, a, spec_for(rogue, module, b"after"))
    assert isinstance(msg, Rejected) and msg.reason == Reason.FORBIDDEN and "revoked" in msg.detail
    assert refusals(a, "revoked") >= 1 and refusals(b, "revoked") >= 1
    await a.guard.settle()
    with pytest.raises(EdgenodeError):
        await rogue.submit(req(module, b"after"))
    assert [n.chain.height for n in sw.nodes] == heights
    await honest_round(sw, honest, module)


async def test_replayed_spec_is_refused(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    sw = await swarm_factory(1)
    sub = await sw.client(("submitter",))
    module = sub.add_module(cat_wasm)
    node = sw.nodes[0]
    nonce = os.urandom(16)
    ok = await raw_task(sub, node, spec_for(sub, module, b"once", task_id="t1", nonce=nonce))
    assert isinstance(ok, Receipt)
    again = await raw_task(sub, node, spec_for(sub, module, b"once", task_id="t2", nonce=nonce))
    assert isinstance(again, Rejected) and again.reason == Reason.REPLAYED
    assert task_refusals(node, "replayed") == 1 and node.chain.height == 1
    await honest_round(sw, sub, module)


async def test_tampered_ciphertext_is_refused(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    sw = await swarm_factory(1)
    sub = await sw.client(("submitter",))
    module = sub.add_module(cat_wasm)
    node = sw.nodes[0]
    bad = spec_for(sub, module, os.urandom(64), policy={POLICY_ENC: ENC_BOX})
    msg = await raw_task(sub, node, bad)
    assert isinstance(msg, Rejected) and msg.reason == Reason.FORBIDDEN and "bad_ciphertext" in msg.detail
    assert task_refusals(node, "bad_ciphertext") == 1 and refusals(node, "bad_ciphertext") == 1
    # an output ciphertext altered by the executor fails the submitter's check
    honest = node.executor.handle

    async def tampering(sender: str, data: bytes) -> bytes:
        env = wire.open_envelope(await honest(sender, data))
        rc = env.message
        assert isinstance(rc, Receipt)
        flipped = bytes([rc.output[0] ^ 1]) + rc.output[1:]
        fake = Receipt(rc.task_id, rc.spec_hash, rc.status, rc.exit_code, flipped, rc.output_hash, rc.stderr,
                       rc.fuel_used, rc.wall_ms, rc.entry, rc.prev_entry, rc.grants)
        return wire.seal(node.identity, fake)

    node.transport.serve(TASK_PROTOCOL, tampering)
    with pytest.raises(InvalidReceipt, match="does not decrypt"):
        await sub.submit(req(module, b"private"))
    assert sub.guard is not None and sub.guard.abuse.counters["offence_forged_receipt"] >= 1
    node.transport.serve(TASK_PROTOCOL, honest)
    await honest_round(sw, sub, module)


async def test_capabilities_follow_role_and_policy(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    sw = await swarm_factory(1, policy=LocalPolicy(max_fuel=10_000_000, data_roles=("submitter",)))
    sub = await sw.client(("submitter",))
    module = sub.add_module(cat_wasm)
    node = sw.nodes[0]
    with pytest.raises(EdgenodeError, match="capability_denied"):
        await sub.submit(req(module, b"x", limits=TaskLimits(fuel=50_000_000)))
    with pytest.raises(EdgenodeError, match="capability_denied"):
        await sub.submit(req(module, b"x", limits=TaskLimits(fuel=1_000_000), data_dirs=("secrets",)))
    trainer = await sw.client(("trainer",))
    with pytest.raises(EdgenodeError, match="role_not_allowed"):
        await trainer.submit(req(module, b"x", limits=TaskLimits(fuel=1_000_000)))
    out = await sub.submit(req(module, b"fits", limits=TaskLimits(fuel=1_000_000)))
    assert out.output == b"fits" and out.receipts[0].receipt.grants["fuel"] == "1000000"
    assert task_refusals(node, "capability_denied") == 2 and task_refusals(node, "role_not_allowed") == 1


async def test_flood_of_invalid_messages_bans_and_spreads_evidence(
    swarm_factory: SwarmFactory, cat_wasm: bytes
) -> None:
    sw = await swarm_factory(2, abuse=AbuseConfig(limits={"task": RateSpec(500.0, 500.0),
                                                         "gossip": RateSpec(50.0, 50.0)}))
    honest = await sw.client(("submitter",))
    module = honest.add_module(cat_wasm)
    ident = Identity.generate()
    flooder = await sw.client(("submitter",), ident=ident)
    a, b = sw.nodes
    assert a.guard is not None and b.guard is not None
    evidence_at_b = b.transport.subscribe(EVIDENCE_TOPIC)
    good = wire.seal(ident, spec_for(flooder, module, b"x"))
    forged = good[:-1] + bytes([good[-1] ^ 1])  # breaks the signature
    honest_jobs = asyncio.gather(*(honest.submit(req(module, f"h{i}".encode())) for i in range(6)))
    answers = await asyncio.gather(
        *(flooder.transport.request(a.peer_id, TASK_PROTOCOL, forged, timeout=5) for _ in range(15)),
        return_exceptions=True,
    )
    assert any(isinstance(x, bytes) and "invalid spec" in str(wire.open_envelope(x).message) for x in answers)
    for _ in range(20):  # a gossip flood of garbage on a node topic
        await flooder.transport.publish(ADVERT_TOPIC, os.urandom(40))
    outs = await honest_jobs
    assert [o.output for o in outs] == [f"h{i}".encode() for i in range(6)]
    assert a.guard.abuse.is_banned(ident.peer_id, a.guard.abuse_time_s())
    async with asyncio.timeout(10):
        got = await anext(evidence_at_b)
    _env, ev = wire.open_as(Evidence, got.data)
    assert ev.offender == ident.public_key and ev.offence == "invalid_signature"
    await a.guard.settle()
    assert ident.peer_id not in a.transport.peers()
    assert refusals(a, "penalised") + refusals(a, "bad_certificate") >= 1
    try:  # a banned peer that comes back is refused as penalised (or cannot reach the node at all)
        again = wire.open_envelope(await flooder.transport.request(a.peer_id, TASK_PROTOCOL, good, timeout=5))
        msg = again.message
        assert isinstance(msg, Rejected) and msg.reason == Reason.FORBIDDEN and "penalised" in msg.detail
    except NetError:
        pass
    assert a.chain.height + b.chain.height == 6  # the flooder's tasks never ran
    await honest_round(sw, honest, module)


async def test_equivocating_member_is_banned_with_evidence(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    from edgenode.protocol import LEDGER_PROTOCOL, LedgerEntries
    from ledger import EquivocationProof, build_entry

    sw = await swarm_factory(3)
    sub = await sw.client(("submitter",))
    module = sub.add_module(cat_wasm)
    a, b, c = sw.nodes
    sub.adverts.remove(b.peer_id)  # all the work goes to a
    sub.adverts.remove(c.peer_id)
    for i in range(2):
        await sub.submit(req(module, str(i).encode()))
    await a.chain.flush()
    await b.sync_from(a.peer_id)
    head = await a.store.head(a.identity.public_key)
    assert head is not None
    prev = await a.store.get(a.identity.public_key, head.seq - 1)
    twin = build_entry(a.identity, prev, "task_result", b"a different history", head.timestamp_ms)

    async def lying(sender: str, data: bytes) -> bytes:
        return wire.seal(a.identity, LedgerEntries((twin.to_bytes(),)))

    a.transport.serve(LEDGER_PROTOCOL, lying)
    evidence_at_c = c.transport.subscribe(EVIDENCE_TOPIC)
    await b.sync_quietly(a.peer_id, head.seq + 1)
    assert b.guard is not None and b.guard.abuse.is_banned(a.peer_id, b.guard.abuse_time_s())
    (ev,) = [e for e in b.guard.evidence if e.offence == "equivocation"]
    proof = EquivocationProof.from_bytes(ev.proof)
    assert proof.author == a.identity.public_key == ev.offender and proof.seq == head.seq
    await b.guard.settle()
    assert a.peer_id not in b.transport.peers()
    async with asyncio.timeout(10):  # the proof speaks for itself: c bans the forker too
        got = await anext(evidence_at_c)
    assert wire.open_as(Evidence, got.data)[1] == ev
    assert c.guard is not None and c.guard.abuse.is_banned(a.peer_id, c.guard.abuse_time_s())


@pytest.fixture(scope="module")
def exitcode_wasm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "edgenode_example_tasks_build", Path(__file__).resolve().parents[2] / "examples/tasks/build.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    if not build.have_clang():
        pytest.skip("clang for wasm32-wasi is not installed (scripts/setup.sh installs it)")
    paths = build.build_all(tmp_path_factory.mktemp("tasks"))
    return bytes(Path(paths["exitcode"]).read_bytes())


async def test_granted_data_dir_is_mounted_read_only(
    swarm_factory: SwarmFactory, exitcode_wasm: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    d = tmp_path_factory.mktemp("maps")
    (d / "input.txt").write_text("granted line\n")
    sw = await swarm_factory(1, policy=LocalPolicy(data_roles=("submitter",), data_dirs={"maps": str(d)}))
    sub = await sw.client(("submitter",))
    module = sub.add_module(exitcode_wasm)
    out = await sub.submit(req(module, b"", data_dirs=("maps",)))
    assert b"data: granted line\n" in out.output and b"write /data: denied" in out.output
    assert out.receipts[0].receipt.grants["data_dirs"] == "maps"
    plain = await sub.submit(req(module, b""))
    assert b"no /data" in plain.output
