"""Hostile bytes on the request path (issue 13, findings 8 and 10), over memnet to real nodes.

Each attack goes through the entry point a peer uses (a request on the task or
status protocol) to an open-mode node with a real sandbox and a real SQLite
ledger; each test checks the refusal and its reason, that an honest task still
runs afterwards, and that nothing the node already recorded is lost.
"""

from __future__ import annotations

import os
import stat
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgenode import wire
from edgenode.config import NodeConfig, NodeSection
from edgenode.errors import DecodeError, LocalError
from edgenode.identity import Identity
from edgenode.net import RemoteFailure
from edgenode.net.memnet import MemNetwork
from edgenode.node import NodeTiming
from edgenode.protocol import STATUS_PROTOCOL, TASK_PROTOCOL, Receipt, Rejected, TaskLimits, TaskSpec
from edgenode.reasons import Reason
from edgenode.runtime import Runtime
from edgenode.sandbox import Sandbox
from edgenode.tasks import Submitter, SystemClock, TaskRequest
from ledger import SqliteLedgerStore, verify_store
from tests.runtimes import memnet_runtime, memnet_submitter

from .conftest import SwarmFactory

pytestmark = pytest.mark.timeout(60)


class Open:
    """One open-mode node and one honest submitter on a memnet."""

    def __init__(self, rt: Runtime, sub: Submitter, net: MemNetwork) -> None:
        self.rt = rt
        self.node = rt.node
        self.sub = sub
        self.net = net
        self.strangers: list[Submitter] = []

    async def stranger(self) -> tuple[Identity, Submitter]:
        ident = Identity.generate()
        s = await memnet_submitter(self.net, self.rt, ident)
        self.strangers.append(s)
        return ident, s

    async def honest_task(self, module: str, data: bytes) -> None:
        out = await self.sub.submit(TaskRequest("wasm", module, input=data, deadline_ms=10_000))
        assert out.ok and out.output == data


@pytest.fixture
async def open_node(tmp_path: Path, sandbox: Sandbox) -> AsyncIterator[Open]:
    net = MemNetwork(seed=7)
    store = await SqliteLedgerStore.open(tmp_path / "node.db", synchronous="NORMAL")
    rt = memnet_runtime(net, NodeConfig(node=NodeSection(slots=2, queue=16)), store, sandbox=sandbox,
                        timing=NodeTiming(advert_s=0.2, head_s=0.2))
    await rt.start()
    sub = await memnet_submitter(net, rt)
    rig = Open(rt, sub, net)
    yield rig
    for s in [*rig.strangers, sub]:
        await s.close()
        await s.transport.stop()
    await rt.stop()


def _unsigned_empty_lists(n: int, author: bytes) -> bytes:
    """An envelope whose body is ``n`` empty lists (2 bytes each on the wire), with a zero signature."""
    varint = bytearray()
    k = n
    while k >= 0x80:
        varint.append((k & 0x7F) | 0x80)
        k >>= 7
    varint.append(k)
    body = b"\x07" + bytes(varint) + b"\x07\x00" * n
    return wire.encode([1, author, body, bytes(64)])


async def test_unsigned_frame_is_refused_before_its_body_is_decoded(open_node: Open, cat_wasm: bytes) -> None:
    node, sub = open_node.node, open_node.sub
    module = sub.add_module(cat_wasm)
    await open_node.honest_task(module, b"before")
    height = node.chain.height
    frame = _unsigned_empty_lists(500_000, Identity.generate().public_key)  # 1 MB; ~35 MB of lists decoded
    tracemalloc.start()
    try:
        answer = await sub.transport.request(node.peer_id, TASK_PROTOCOL, frame)
        _cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    _env, msg = wire.open_as(Rejected, answer)
    assert msg.reason == Reason.MALFORMED and "signature" in msg.detail  # checked first: the body was never decoded
    assert peak < 4 * len(frame), f"one unsigned frame of {len(frame)} bytes cost {peak} bytes"
    await open_node.honest_task(module, b"after")  # still serving, nothing lost
    assert node.chain.height == height + 1 and (await verify_store(node.store)).ok


async def test_signed_frame_with_too_many_values_is_refused(open_node: Open, cat_wasm: bytes) -> None:
    node, sub = open_node.node, open_node.sub
    module = sub.add_module(cat_wasm)
    ident, _stranger = await open_node.stranger()
    now = SystemClock().now_ms()
    many = tuple("" for _ in range(wire.MAX_ITEMS + 1))  # a throwaway key signs it: signatures cost nothing
    spec = TaskSpec("t-many", "wasm", module, b"x", many, TaskLimits(), (), (), os.urandom(16), now, now + 10_000)
    answer = await sub.transport.request(node.peer_id, TASK_PROTOCOL, wire.seal(ident, spec))
    _env, msg = wire.open_as(Rejected, answer)
    assert msg.reason == Reason.MALFORMED and "too many values" in msg.detail
    with pytest.raises(DecodeError, match="too many values"):
        wire.decode(wire.encode([None] * (wire.MAX_ITEMS + 1)))
    await open_node.honest_task(module, b"still here")


async def test_oversized_spec_is_refused_unopened(open_node: Open, cat_wasm: bytes) -> None:
    node, sub = open_node.node, open_node.sub
    module = sub.add_module(cat_wasm)
    limit = node.config.tables.spec_max_bytes
    now = SystemClock().now_ms()
    spec = TaskSpec("t-big", "wasm", module, b"x" * limit, (), TaskLimits(), (), (), os.urandom(16), now, now + 10_000)
    answer = await sub.transport.request(node.peer_id, TASK_PROTOCOL, wire.seal(sub.signer, spec))
    _env, msg = wire.open_as(Rejected, answer)
    assert msg.reason == Reason.TOO_LARGE
    await open_node.honest_task(module, b"fine")


async def test_failed_handler_sends_a_code_not_its_exception_text(open_node: Open) -> None:
    node, sub = open_node.node, open_node.sub
    with pytest.raises(RemoteFailure) as info:
        await sub.transport.request(node.peer_id, STATUS_PROTOCOL, b"\x07\x01\x09 not an envelope")
    text = str(info.value)
    assert "bad_request" in text
    assert "DecodeError" not in text and "unknown tag" not in text


class _FailingInfer:
    """An inference engine whose failure message names a local path."""

    def models(self) -> list[str]:
        return ["m" * 64]

    def providers(self) -> list[str]:
        return []

    def infer(self, model_hash: str, npy: bytes) -> bytes:
        raise LocalError("cannot read /srv/secret/models/private.onnx")


async def test_task_failure_detail_stays_in_the_executors_log(tmp_path: Path) -> None:
    net = MemNetwork(seed=3)
    store = await SqliteLedgerStore.open(tmp_path / "infer.db", synchronous="NORMAL")
    rt = memnet_runtime(net, NodeConfig(), store, registry=_FailingInfer(), timing=NodeTiming(advert_s=0.2, head_s=0.2))
    await rt.start()
    cid = Identity.generate()
    t = net.add_node(cid)
    await t.start()
    try:
        now = SystemClock().now_ms()
        spec = TaskSpec("t-inf", "infer", "m" * 64, b"", (), TaskLimits(), (), (), os.urandom(16), now, now + 10_000)
        answer = await t.request(rt.peer_id, TASK_PROTOCOL, wire.seal(cid, spec))
        _env, rc = wire.open_as(Receipt, answer)
        assert rc.status == "error"
        assert b"infer failed" in rc.stderr and b"/srv/secret" not in rc.stderr
    finally:
        await t.stop()
        await rt.stop()


async def test_certificate_from_a_slightly_fast_clock_is_accepted(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    from edgenode.security import issue_certificate

    sw = await swarm_factory(1)
    ident = Identity.generate()
    ahead = SystemClock().now_ms() + 60_000  # the admin's clock runs a minute ahead of the node's
    sw.serial += 1
    cert = issue_certificate(sw.admin, ident.public_key, ("submitter",), serial=sw.serial, now_ms=ahead)
    sub = await sw.client(cert=cert, ident=ident)
    module = sub.add_module(cat_wasm)
    out = await sub.submit(TaskRequest("wasm", module, input=b"skewed", deadline_ms=10_000))
    assert out.ok and out.output == b"skewed"
    too_far = issue_certificate(sw.admin, ident.public_key, ("submitter",), serial=sw.serial + 1,
                                now_ms=SystemClock().now_ms() + 3_600_000)
    from edgenode.security import MembershipView, Refused

    with pytest.raises(Refused) as info:
        MembershipView(sw.admin.public_key).check(ident.public_key, too_far, SystemClock().now_ms())
    assert info.value.reason == "not_yet_valid"


def test_identity_save_never_writes_through_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    key = tmp_path / "node.key"
    key.symlink_to(victim)
    ident = Identity.generate()
    with pytest.raises(LocalError):
        ident.save(key)  # exists (as a link): refused without force
    old = os.umask(0)
    try:
        ident.save(key, force=True)
    finally:
        os.umask(old)
    assert victim.read_bytes() == b"precious"
    assert not key.is_symlink() and Identity.load(key) == ident
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_identity_save_replaces_atomically(tmp_path: Path) -> None:
    key = tmp_path / "node.key"
    first, second = Identity.generate(), Identity.generate()
    first.save(key)
    with pytest.raises(LocalError, match="exists"):
        second.save(key)
    assert Identity.load(key) == first
    second.save(key, force=True)
    assert Identity.load(key) == second and stat.S_IMODE(key.stat().st_mode) == 0o600


def test_deploy_private_keys_are_never_written_through_a_symlink(tmp_path: Path) -> None:
    from federated.deploy import make_supernode_keys

    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / "sn").symlink_to(victim)
    old = os.umask(0)
    try:
        keys = make_supernode_keys(tmp_path, "sn")
    finally:
        os.umask(old)
    assert victim.read_bytes() == b"precious"
    assert not keys.private.is_symlink() and b"PRIVATE KEY" in keys.private.read_bytes()
    assert stat.S_IMODE(keys.private.stat().st_mode) == 0o600
