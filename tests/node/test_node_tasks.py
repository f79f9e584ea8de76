"""Nodes over the in-memory network with a real sandbox and real SQLite ledgers."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from edgenode import wire
from edgenode.identity import Identity
from edgenode.inference import ModelRegistry
from edgenode.inference.digits import export_mlp_onnx
from edgenode.protocol import (
    RESULT_KIND,
    TASK_PROTOCOL,
    InvalidReceipt,
    NoExecutor,
    Receipt,
    Rejected,
    SpecExpired,
    TaskLimits,
    TaskRecord,
    TaskSpec,
)
from edgenode.reasons import Reason
from edgenode.scheduler import Admit
from edgenode.tasks import RegistryEngine, SystemClock, TaskRequest, npy_bytes, npy_load
from ledger import verify_store

from .conftest import SwarmFactory

pytestmark = pytest.mark.timeout(60)


def wasm_req(module: str, data: bytes, **kw: object) -> TaskRequest:
    return TaskRequest("wasm", module, input=data, deadline_ms=10_000, **kw)  # type: ignore[arg-type]


async def test_submit_runs_and_records(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    sw = await swarm_factory(3)
    sub = await sw.client()
    module = sub.add_module(cat_wasm)
    out = await sub.submit(wasm_req(module, b"hello swarm"))
    assert out.ok and out.output == b"hello swarm" and out.exit_code == 0
    (vr,) = out.receipts
    node = sw.node(out.executor)
    stored = await node.store.get(node.identity.public_key, vr.entry.seq)
    assert stored is not None and stored.hash == vr.entry.hash and stored.kind == RESULT_KIND
    record = wire.from_bytes(TaskRecord, stored.body or b"")
    assert record.output_hash == hashlib.sha256(b"hello swarm").hexdigest()
    assert record.submitter == sub.transport.peer_id and record.module == module
    # a second task on the same node links to the first
    out2 = await sub.submit(wasm_req(module, b"again"))
    assert out2.output == b"again"
    report = await verify_store(node.store)
    assert report.ok


async def test_redundancy_majority(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    sw = await swarm_factory(4)
    sub = await sw.client()
    module = sub.add_module(cat_wasm)
    out = await sub.submit(wasm_req(module, b"x" * 100, redundancy=3))
    executors = {r.executor for r in out.receipts}
    assert len(out.receipts) >= 2 and len(executors) == len(out.receipts)
    assert out.disagreeing == ()
    for vr in out.receipts:
        node = sw.node(vr.executor)
        assert (await node.store.get(node.identity.public_key, vr.entry.seq)) is not None


async def test_reassigns_when_executor_crashed(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    sw = await swarm_factory(3)
    sub = await sw.client()
    module = sub.add_module(cat_wasm)
    first = sub.adverts.live(sub.clock.now_ms())[0].peer_id
    # make the crashed node the clear favourite
    for a in sub.adverts.live(sub.clock.now_ms()):
        sub.rtt.observe(a.peer_id, 1.0 if a.peer_id == first else 50.0)
    sw.net.crash(first)
    out = await sub.submit(wasm_req(module, b"still works"))
    assert out.ok and out.executor != first and out.attempts >= 2


async def test_busy_node_gives_no_executor(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    sw = await swarm_factory(1, slots=1, queue=0)
    sub = await sw.client()
    module = sub.add_module(cat_wasm)
    node = sw.nodes[0]
    assert isinstance(node.admission.offer("someone-else", 0), Admit)
    node.admission.started()  # the one slot is taken
    with pytest.raises(NoExecutor, match=r"queue_full"):
        await sub.submit(wasm_req(module, b"no room"))
    assert node.chain.height == 0
    node.admission.finished()
    assert (await sub.submit(wasm_req(module, b"room now"))).output == b"room now"


async def test_expired_spec_is_refused(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    class Past(SystemClock):
        """A submitter whose wall clock is an hour behind; its monotonic clock is fine."""

        def now_ms(self) -> int:
            return super().now_ms() - 3_600_000

    sw = await swarm_factory(2)
    sub = await sw.client(clock=Past())
    module = sub.add_module(cat_wasm)
    with pytest.raises(SpecExpired):
        await sub.submit(wasm_req(module, b"late"))


async def test_missing_capability_is_no_executor(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    sw = await swarm_factory(2)
    sub = await sw.client()
    module = sub.add_module(cat_wasm)
    with pytest.raises(NoExecutor, match="offer unanswered"):
        await sub.submit(wasm_req(module, b"", requires=("gpu:h200",)))


async def test_market_awards_to_a_bidder(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    sw = await swarm_factory(3)
    sub = await sw.client(bootstrap=0)
    module = sub.add_module(cat_wasm)
    out = await sub.submit(wasm_req(module, b"by market", market=True))
    assert out.ok and out.output == b"by market"
    assert out.executor in {n.peer_id for n in sw.nodes}


async def test_replay_and_repeat(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    sw = await swarm_factory(1)
    sub = await sw.client()
    module = sub.add_module(cat_wasm)
    node = sw.nodes[0]
    now = sub.clock.now_ms()
    nonce = os.urandom(16)
    spec = TaskSpec("t1", "wasm", module, b"once", (), TaskLimits(), (), (), nonce, now, now + 10_000)
    sealed = wire.seal(sub.signer, spec)
    r1 = await sub.transport.request(node.peer_id, TASK_PROTOCOL, sealed)
    r2 = await sub.transport.request(node.peer_id, TASK_PROTOCOL, sealed)
    assert r1 == r2 and isinstance(wire.open_envelope(r1).message, Receipt)
    assert node.chain.height == 1  # recorded once
    other = TaskSpec("t2", "wasm", module, b"once", (), TaskLimits(), (), (), nonce, now, now + 10_000)
    r3 = await sub.transport.request(node.peer_id, TASK_PROTOCOL, wire.seal(sub.signer, other))
    msg = wire.open_envelope(r3).message
    assert isinstance(msg, Rejected) and msg.reason == Reason.REPLAYED


async def test_forged_receipt_is_refused(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    sw = await swarm_factory(1)
    node = sw.nodes[0]
    honest = node.executor.handle
    mallory = Identity.generate()
    signer, mode = node.identity, "output"

    async def forging(sender: str, data: bytes) -> bytes:
        env = wire.open_envelope(await honest(sender, data))
        rc = env.message
        assert isinstance(rc, Receipt)
        if mode == "prev":  # honest output, but the entry does not link to the entry sent as previous
            fake = Receipt(rc.task_id, rc.spec_hash, rc.status, rc.exit_code, rc.output, rc.output_hash,
                           rc.stderr, rc.fuel_used, rc.wall_ms, rc.entry, rc.entry)
        else:
            forged = hashlib.sha256(b"forged").hexdigest()
            fake = Receipt(rc.task_id, rc.spec_hash, rc.status, rc.exit_code, b"forged", forged,
                           rc.stderr, rc.fuel_used, rc.wall_ms, rc.entry, rc.prev_entry)
        return wire.seal(signer, fake)

    node.transport.serve(TASK_PROTOCOL, forging)
    sub = await sw.client()
    module = sub.add_module(cat_wasm)
    signer = node.identity
    with pytest.raises(InvalidReceipt, match="ledger record does not match"):
        await sub.submit(wasm_req(module, b"truth"))
    signer = mallory  # a receipt signed by someone else than the executor
    with pytest.raises(InvalidReceipt, match="not by the executor"):
        await sub.submit(wasm_req(module, b"truth"))
    signer, mode = node.identity, "prev"
    with pytest.raises(InvalidReceipt, match="previous entry"):
        await sub.submit(wasm_req(module, b"truth"))
    assert node.chain.height == 3  # the honest executor did record each run


async def test_ledger_replication(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    sw = await swarm_factory(2)
    sub = await sw.client()
    module = sub.add_module(cat_wasm)
    for i in range(3):
        await sub.submit(wasm_req(module, str(i).encode()))
    a, b = sw.nodes
    await a.chain.flush()
    await b.chain.flush()
    for x, y in ((a, b), (b, a)):
        assert await y.sync_from(x.peer_id) == x.chain.height
        held = await y.store.head(x.identity.public_key)
        assert (held.seq if held else 0) == x.chain.height
    assert (await verify_store(a.store)).ok and (await verify_store(b.store)).ok


async def test_status_lists_adverts(swarm_factory: SwarmFactory) -> None:
    sw = await swarm_factory(3)
    sub = await sw.client()
    ads = await sub.status()
    assert sorted(a.peer_id for a in ads) == sorted(n.peer_id for n in sw.nodes)
    assert all("wasm" in a.capabilities and a.slots == 2 for a in ads)


async def test_stop_drains_and_refuses_new_work(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    sw = await swarm_factory(1)
    sub = await sw.client()
    module = sub.add_module(cat_wasm)
    await sub.submit(wasm_req(module, b"before"))
    node = sw.nodes[0]
    node.executor.closing = True
    with pytest.raises(NoExecutor, match=r"node stopping|offer unanswered"):
        await sub.submit(wasm_req(module, b"after", attempt_ms=2000))
    assert node.chain.height == 1


async def test_infer_task(swarm_factory: SwarmFactory, tmp_path: object) -> None:
    from pathlib import Path

    rng = np.random.default_rng(0)
    reg = ModelRegistry(Path(str(tmp_path)) / "models")
    model = reg.add(export_mlp_onnx([rng.normal(size=(64, 10)).astype(np.float32), np.zeros(10, np.float32)]))
    sw = await swarm_factory(2, infer=RegistryEngine(reg))
    sub = await sw.client()
    x = rng.random((3, 64), dtype=np.float32)
    out = await sub.submit(TaskRequest("infer", model, input=npy_bytes(x)))
    probs = npy_load(out.output)
    assert out.ok and probs.shape == (3, 10)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(probs, reg.run(model, {"x": x})["probs"])
    bad = await sub.submit(TaskRequest("infer", model, input=b"not a tensor"))
    assert bad.status == "error" and not bad.ok


async def test_equivocation_is_caught_on_replication(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    from edgenode.protocol import LEDGER_PROTOCOL, LedgerEntries
    from ledger import ChainError, build_entry

    sw = await swarm_factory(2)
    sub = await sw.client()
    module = sub.add_module(cat_wasm)
    a, b = sw.nodes
    sub.adverts.remove(b.peer_id)  # all the work goes to a
    for i in range(3):
        await sub.submit(wasm_req(module, str(i).encode()))
    await a.chain.flush()
    assert a.chain.height == 3
    await b.sync_from(a.peer_id)
    head = await a.store.head(a.identity.public_key)
    assert head is not None
    prev = None if head.seq == 1 else await a.store.get(a.identity.public_key, head.seq - 1)
    twin = build_entry(a.identity, prev, "task_result", b"a different history", head.timestamp_ms)

    async def lying(sender: str, data: bytes) -> bytes:
        return wire.seal(a.identity, LedgerEntries((twin.to_bytes(),)))

    a.transport.serve(LEDGER_PROTOCOL, lying)
    with pytest.raises(ChainError) as info:
        await b.sync_from(a.peer_id, height=head.seq + 1)
    assert info.value.reason == "fork"
    (proof,) = await b.store.forks()
    assert proof.seq == head.seq and proof.author == a.identity.public_key
    assert b.metrics.registry.get_sample_value("edgenode_equivocations_total") == 1
