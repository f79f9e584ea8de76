"""Tables a peer can grow (issue 13, findings 5 and 9), attacked over memnet where a peer can reach them.

Open-mode nodes with a real sandbox and a real SQLite ledger; each attack is sent as
the requests a peer would send.  Each test checks the refusal and its reason (where
there is one), that the table stays within its configured bound, that honest work
still runs, and that nothing already recorded is lost.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from edgenode import wire
from edgenode.clock import ManualClock
from edgenode.config import NodeConfig, NodeSection, TablesSection
from edgenode.identity import Identity
from edgenode.net import MemoryBlobStore
from edgenode.net.memnet import MemNetwork, MemTransport
from edgenode.node import Node, NodeTiming
from edgenode.protocol import TASK_PROTOCOL, Advert, Busy, Receipt, Rejected, TaskLimits, TaskSpec
from edgenode.reasons import Reason
from edgenode.runtime import Runtime
from edgenode.sandbox import Sandbox
from edgenode.scheduler import AdvertTable
from edgenode.security import AbuseConfig, AbuseGuard, SwarmGuard, issue_certificate
from edgenode.tasks import Clock, SqliteReplayStore, SystemClock
from ledger import SqliteLedgerStore, verify_store
from tests.runtimes import memnet_runtime

from .conftest import SwarmFactory

pytestmark = pytest.mark.timeout(120)


@dataclasses.dataclass
class Rig:
    net: MemNetwork
    rt: Runtime
    client: MemTransport
    signer: Identity
    module: str

    @property
    def node(self) -> Node:
        return self.rt.node

    def spec(self, task_id: str, *, nonce: bytes | None = None, data: bytes = b"x", now: int | None = None,
             life_ms: int = 10_000) -> TaskSpec:
        t = SystemClock().now_ms() if now is None else now
        return TaskSpec(task_id, "wasm", self.module, data, (), TaskLimits(), (), (),
                        os.urandom(16) if nonce is None else nonce, t, t + life_ms)

    async def send(self, spec: TaskSpec, signer: Identity | None = None) -> Any:
        answer = await self.client.request(self.node.peer_id, TASK_PROTOCOL, wire.seal(signer or self.signer, spec))
        return wire.open_envelope(answer).message


RigFactory = Callable[..., Any]


@pytest.fixture
async def rig(tmp_path: Path, sandbox: Sandbox, cat_wasm: bytes) -> AsyncIterator[RigFactory]:
    made: list[Rig] = []

    async def make(*, tables: TablesSection | None = None, clock: Clock | None = None, slots: int = 2,
                   queue: int = 16, name: str = "n", ident: Identity | None = None,
                   replay_store: Any = None) -> Rig:
        net = MemNetwork(seed=len(made))
        cfg = NodeConfig(node=NodeSection(slots=slots, queue=queue), tables=tables or TablesSection())
        store = await SqliteLedgerStore.open(tmp_path / f"{name}.db", synchronous="NORMAL")
        rt = memnet_runtime(net, cfg, store, ident=ident, sandbox=sandbox, clock=clock,
                            timing=NodeTiming(advert_s=0.2, head_s=0.2), replay_store=replay_store)
        await rt.start()
        cid = Identity.generate()
        client = net.add_node(cid)
        await client.start()
        blobs = MemoryBlobStore()
        module = blobs.put(cat_wasm)
        client.serve_blobs(blobs)  # the executor fetches the module from the submitter
        await client.connect(rt.transport.listen_addrs[0])
        r = Rig(net, rt, client, cid, module)
        made.append(r)
        return r

    yield make
    for r in made:
        await r.client.stop()
        await r.rt.stop()


# -- finding 5: the replay guard ------------------------------------------------------------
async def test_huge_nonces_are_refused_and_cost_nothing(rig: RigFactory) -> None:
    r = await rig()
    for i in range(8):
        msg = await r.send(r.spec(f"big-{i}", nonce=os.urandom(1 << 20)))
        assert isinstance(msg, Rejected) and msg.reason == Reason.BAD_NONCE
    assert len(r.node.executor.replay) == 0
    ok = await r.send(r.spec("honest"))
    assert isinstance(ok, Receipt) and ok.output == b"x"
    assert len(r.node.executor.replay) == 1


async def test_a_spec_refused_as_busy_is_not_remembered(rig: RigFactory) -> None:
    r = await rig(slots=1, queue=0)
    adm = r.node.admission
    adm.offer("someone-else", 0)
    adm.started()  # the one slot is taken
    spec = r.spec("busy-then-run")
    first = await r.send(spec)
    assert isinstance(first, Busy)
    adm.finished()
    again = await r.send(spec)  # the same signed spec, retried: it never ran, so it is not a replay
    assert isinstance(again, Receipt)
    replay = await r.send(dataclasses.replace(spec, task_id="other"))
    assert isinstance(replay, Rejected) and replay.reason == Reason.REPLAYED


async def test_replay_entries_expire_as_injected_time_passes(rig: RigFactory) -> None:
    clock = ManualClock(SystemClock().now_ms())
    r = await rig(clock=clock)
    for i in range(20):
        msg = await r.send(r.spec(f"t{i}", now=clock.now_ms(), life_ms=10_000))
        assert isinstance(msg, Receipt)
    assert len(r.node.executor.replay) == 20
    clock.advance(10_001)  # every spec above has expired
    msg = await r.send(r.spec("later", now=clock.now_ms(), life_ms=10_000))
    assert isinstance(msg, Receipt)
    assert len(r.node.executor.replay) == 1


async def test_replay_table_is_bounded_and_says_busy_when_full(rig: RigFactory) -> None:
    r = await rig(tables=TablesSection(replay_entries=5))
    for i in range(5):
        assert isinstance(await r.send(r.spec(f"t{i}")), Receipt)
    full = await r.send(r.spec("sixth"))
    assert isinstance(full, Busy) and full.reason == Reason.REPLAY_FULL and full.retry_after_ms > 0
    assert len(r.node.executor.replay) == 5


async def test_a_captured_spec_is_refused_by_the_restarted_node(tmp_path: Path, rig: RigFactory) -> None:
    ident = Identity.generate()
    store = await SqliteReplayStore.open(tmp_path / "replay.db")
    r = await rig(ident=ident, name="before", replay_store=store)
    spec = r.spec("captured", life_ms=60_000)
    sealed = wire.seal(r.signer, spec)
    first = wire.open_envelope(await r.client.request(r.node.peer_id, TASK_PROTOCOL, sealed)).message
    assert isinstance(first, Receipt)
    await r.client.stop()
    await r.rt.stop()  # closes the replay store too
    # the same key restarts (a fresh process: no receipt cache, a new ledger file is fine)
    r2 = await rig(ident=ident, name="after", replay_store=await SqliteReplayStore.open(tmp_path / "replay.db"))
    again = wire.open_envelope(await r2.client.request(r2.node.peer_id, TASK_PROTOCOL, sealed)).message
    assert isinstance(again, Rejected) and again.reason == Reason.REPLAYED
    assert r2.node.chain.height == 0  # not run again
    assert isinstance(await r2.send(r2.spec("honest")), Receipt)


# -- finding 9: tables that grow with every new key -------------------------------------------
async def test_throwaway_submitter_keys_do_not_grow_the_rate_limit_table(rig: RigFactory) -> None:
    r = await rig(tables=TablesSection(peers=8))
    for i in range(40):
        msg = await r.send(r.spec(f"k{i}"), signer=Identity.generate())
        assert isinstance(msg, Receipt)
    assert r.node.admission.tracked_peers <= 8
    assert r.node.chain.height == 40 and (await verify_store(r.node.store)).ok


async def test_receipt_cache_is_bounded_in_bytes(rig: RigFactory) -> None:
    budget = 64 * 1024
    r = await rig(tables=TablesSection(receipt_bytes=budget, receipts=1000))
    last = None
    for i in range(20):
        last = r.spec(f"r{i}", data=os.urandom(8 * 1024))
        assert isinstance(await r.send(last), Receipt)
    count, held = r.node.executor.cached_receipts
    assert 0 < count < 20 and held <= budget
    assert last is not None
    height = r.node.chain.height
    assert isinstance(await r.send(last), Receipt)  # a repeat of a kept one is answered, not rerun
    assert r.node.chain.height == height
    huge = r.spec("huge", data=os.urandom(budget))  # one receipt over a quarter of the budget is not kept
    assert isinstance(await r.send(huge), Receipt)
    assert r.node.executor.cached_receipts[1] <= budget


def test_sybil_adverts_do_not_grow_the_advert_table() -> None:
    table = AdvertTable(ttl_ms=15_000, max_entries=64)
    honest = Identity.generate().peer_id

    def advert(peer: str, seq: int, now: int) -> Advert:
        return Advert(peer, (), ("wasm",), 1, 1, 0, 1, "standard", "x", seq, now)

    for i in range(10_000):
        now = i + 1
        if i % 50 == 0:  # the honest peer refreshes its advert now and then
            table.update(advert(honest, i, now), b"", now)
        table.update(advert(f"sybil-{i}", 1, now), b"", now)
    assert len(table) == 64
    assert table.get(honest) is not None  # refreshed faster than the flood turns the table over


async def test_node_wires_the_table_bounds_from_config(rig: RigFactory) -> None:
    r = await rig(tables=TablesSection(adverts=7, peers=9, replay_entries=11))
    assert r.node.adverts.max_entries == 7
    assert r.node.admission.max_peers == 9
    assert r.node.executor.replay.max_entries == 11


async def test_finished_background_tasks_are_not_kept(rig: RigFactory) -> None:
    r = await rig()
    base = r.node.background_tasks
    for i in range(30):
        assert isinstance(await r.send(r.spec(f"b{i}")), Receipt)
        await r.node.announce_head()
    # at most one ledger sync per witnessed peer can be in flight on top of the loops
    assert r.node.background_tasks <= base + r.node.timing.witness


async def test_strangers_do_not_grow_the_swarm_guards_tables(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    from edgenode.net import NetError

    sw = await swarm_factory(1, abuse=AbuseConfig(max_peers=8))
    node = sw.nodes[0]
    assert node.guard is not None
    refused: list[str] = []
    for _ in range(30):
        stranger = await sw.client(roles=None, join=False)
        try:
            answer = await stranger.transport.request(node.peer_id, TASK_PROTOCOL, b"junk", timeout=5.0)
        except NetError:
            refused.append("dropped")  # disconnected as a non-member before it could ask
            continue
        msg = wire.open_envelope(answer).message
        assert isinstance(msg, Rejected) and msg.reason == Reason.FORBIDDEN and "no_certificate" in msg.detail, msg
        refused.append("no_certificate")
    assert len(refused) == 30 and "no_certificate" in refused
    buckets, scores, bans = node.guard.abuse.tracked()
    assert buckets <= 8 * len(AbuseConfig().limits) and scores <= 8 and bans <= 8
    member = await sw.client()
    module = member.add_module(cat_wasm)
    from edgenode.tasks import TaskRequest

    out = await member.submit(TaskRequest("wasm", module, input=b"member", deadline_ms=10_000))
    assert out.ok and out.output == b"member"


def test_evidence_kept_is_bounded() -> None:
    admin = Identity.generate()
    me = Identity.generate()
    now = SystemClock().now_ms()
    cert = issue_certificate(admin, me.public_key, ("executor",), serial=1, now_ms=now)
    guard = SwarmGuard(me, cert, SystemClock(), max_evidence=3)
    for _ in range(10):
        assert guard.offence(Identity.generate().peer_id, "equivocation")  # each one is banned at once
    assert len(guard.evidence) == 3


def test_abuse_guard_tables_stay_bounded_under_many_keys() -> None:
    g = AbuseGuard(AbuseConfig(max_peers=100))
    for i in range(20_000):
        peer = f"p{i}"
        g.allow(peer, "task", float(i))
        g.penalise(peer, "equivocation", float(i))  # 100 points: a ban each
    buckets, scores, bans = g.tracked()
    assert buckets <= 100 * len(AbuseConfig().limits) and scores <= 100 and bans <= 100
    assert g.is_banned("p19999", 19_999.0)  # the newest ban holds
