"""FL on a running swarm over memnet: signed start -> rounds on build_runtime nodes -> progress -> ledger, hot-swap.

Each node's FL controller is the runtime's own (``build_runtime(fl=True)``: ``edgenode.fl.node_controller``,
wired as ``edgenode run`` wires it), started after the node and stopped before it by ``rt.start``/``rt.stop``.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from edgenode import wire
from edgenode.config import NodeConfig
from edgenode.fl import (
    FL_CONTROL_TOPIC,
    LEDGER_KIND,
    FLController,
    FLProgress,
    FLSection,
    FLStalled,
    NoFLNode,
    StartGate,
    StartRefused,
    launch,
    make_start,
)
from edgenode.identity import Identity
from edgenode.inference import ModelRegistry
from edgenode.net.memnet import MemNetwork
from edgenode.runtime import Runtime
from edgenode.tasks import SystemClock
from federated import make_model, to_onnx_bytes
from ledger import verify_store
from tests.runtimes import memnet_runtime


def _controllers(runtimes: list[Runtime]) -> list[FLController]:
    """Each runtime's own FL controller (built with ``fl=True``)."""
    ctrls = []
    for rt in runtimes:
        assert rt.fl is not None
        ctrls.append(rt.fl)
    return ctrls


async def _swarm(tmp_path, n, sections, seed=11):
    net = MemNetwork(seed=seed)
    registries = [ModelRegistry(tmp_path / f"models{k}") for k in range(n)]
    for reg in registries:  # serving an initial model under the alias before the run
        reg.set_alias("digits", reg.add(to_onnx_bytes(make_model("digits"))))
    nodes = [memnet_runtime(net, NodeConfig(fl=sections[k]), models=registries[k], fl=True) for k in range(n)]
    for k, node in enumerate(nodes):  # each node's FL controller starts right after it
        await node.start(bootstrap=[nodes[j].transport.listen_addrs[0] for j in range(k)])
    ctrls = _controllers(nodes)
    light_id = Identity.generate()
    light = net.add_node(light_id)
    await light.start()
    await light.connect(nodes[0].transport.listen_addrs[0])
    await net.drain()
    return net, nodes, registries, ctrls, light, light_id


async def _teardown(nodes, light):
    await light.stop()
    for node in nodes:
        await node.stop()  # the FL controller first, then the node


async def test_start_command_runs_rounds_reports_progress_notes_ledger_and_hot_swaps(tmp_path):
    n, rounds = 3, 3
    sections = [FLSection(partition=f"{k}/{n}") for k in range(n)]
    _, nodes, registries, ctrls, light, light_id = await _swarm(tmp_path, n, sections)
    before = [r.resolve("digits") for r in registries]
    start = make_start(model="digits", rounds=rounds, strategy="fedavg", quorum=n, round_timeout_s=30.0,
                       now_ms=SystemClock().now_ms(), start_delay_ms=200)
    seen = []
    try:
        # the launcher is connected to node 0 only: the others hear the start through gossip
        summaries = await asyncio.wait_for(
            launch(light, light_id, start, peers=[nodes[0].peer_id], expected=n, on_round=seen.append), 180)
        for c in ctrls:
            await asyncio.wait_for(c.wait(start.run_id), 60)
        for node in nodes:
            await node.chain.flush()
        reports = [await verify_store(node.store) for node in nodes]
        heads = [await node.chain.head() for node in nodes]
    finally:
        await _teardown(nodes, light)
    assert [s.round for s in summaries] == list(range(rounds)) and seen == summaries
    assert all(s.nodes == n for s in summaries)
    assert summaries[-1].accuracy_mean >= 0.80
    assert summaries[-1].updates_mean == n
    assert all(c.counters["started"] == 1 for c in ctrls)
    assert all(len(c.results[start.run_id]) == rounds for c in ctrls)
    # every node noted its updates in its own ledger, which verifies
    for rep, head in zip(reports, heads, strict=True):
        assert rep.ok and rep.entries >= rounds
        assert head is not None and head.kind == LEDGER_KIND and json.loads(head.body)["round"] == rounds - 1
    # hot-swap: each registry's digits alias names the model hash the node reported last
    for reg, old in zip(registries, before, strict=True):
        assert reg.resolve("digits") != old
    assert summaries[-1].model_sha256 in {reg.resolve("digits") for reg in registries}


async def test_replayed_start_is_ignored_and_a_busy_node_refuses_a_second_run(tmp_path):
    n = 2
    net, nodes, _, ctrls, light, light_id = await _swarm(tmp_path, n, [FLSection(partition=f"{k}/{n}")
                                                                       for k in range(n)])
    first = make_start(model="digits", rounds=2, strategy="fedavg", quorum=n, round_timeout_s=30.0,
                       now_ms=SystemClock().now_ms(), start_delay_ms=0)
    try:
        await asyncio.wait_for(launch(light, light_id, first, peers=[nodes[0].peer_id], expected=n), 120)
        for c in ctrls:
            await c.wait(first.run_id)
        # the same signed bytes again, on the control topic: nobody starts it a second time
        await light.publish(FL_CONTROL_TOPIC, wire.seal(light_id, first))
        await net.drain()
        assert all(c.counters["started"] == 1 and c.active is None for c in ctrls)
        # a run whose round 0 is scheduled 30 s ahead keeps the nodes busy meanwhile
        now = SystemClock().now_ms()
        later = make_start(model="digits", rounds=5, strategy="fedavg", quorum=n, round_timeout_s=30.0,
                           now_ms=now, start_delay_ms=30_000)
        with pytest.raises(FLStalled, match="no progress"):  # accepted, but no round reported in time
            await launch(light, light_id, later, peers=[nodes[0].peer_id], stall_timeout=0.5)
        await net.drain()
        assert all(c.active == later.run_id for c in ctrls)
        second = make_start(model="digits", rounds=1, strategy="fedavg", quorum=1, round_timeout_s=5.0, now_ms=now)
        with pytest.raises(NoFLNode, match="busy"):
            await launch(light, light_id, second, peers=[nodes[0].peer_id], ack_timeout=1.0)
    finally:
        await _teardown(nodes, light)


async def test_launcher_reports_nodes_with_fl_disabled(tmp_path):
    _, nodes, _, ctrls, light, light_id = await _swarm(tmp_path, 2, [FLSection(enabled=False)] * 2)
    start = make_start(model="digits", rounds=1, strategy="fedavg", quorum=1, round_timeout_s=5.0,
                       now_ms=SystemClock().now_ms())
    try:
        with pytest.raises(NoFLNode, match="disabled"):
            await launch(light, light_id, start, peers=[nodes[0].peer_id], ack_timeout=1.0)
    finally:
        await _teardown(nodes, light)
    assert all(c.counters["started"] == 0 and c.counters["refused"] >= 1 for c in ctrls)


def _start(**kw):
    base = dict(model="digits", rounds=3, strategy="fedavg", quorum=2, round_timeout_s=10.0, now_ms=1_000_000)
    base.update(kw)
    return make_start(**base)


@pytest.mark.parametrize(
    ("section", "start", "now", "reason"),
    [
        (FLSection(), _start(), 1_000_000 + 10 * 60_000, "expired"),
        (FLSection(enabled=False), _start(), 1_000_000, "disabled"),
        (FLSection(controllers=("12D3KooWother",)), _start(), 1_000_000, "forbidden"),
        (FLSection(), _start(model="resnet"), 1_000_000, "unknown"),
        (FLSection(), _start(strategy="nope"), 1_000_000, "unknown"),
        (FLSection(max_rounds=2), _start(), 1_000_000, "bounds"),
        (FLSection(), _start(quorum=0), 1_000_000, "bounds"),
        (FLSection(), _start(strategy="krum", quorum=3), 1_000_000, "bounds"),  # Krum tolerating 1 needs 5
        (FLSection(), _start(ttl_ms=60 * 60_000), 1_000_000, "bad-time"),
        (FLSection(), _start(), 1_000_000 - 60_000, "bad-time"),
    ],
)
def test_gate_refuses(section, start, now, reason):
    with pytest.raises(StartRefused) as info:
        StartGate(section).admit("12D3KooWauthor", start, now)
    assert info.value.reason == reason


def test_gate_admits_once_then_forgets_after_expiry():
    gate = StartGate(FLSection())
    s = _start()
    gate.admit("a", s, 1_000_000)
    with pytest.raises(StartRefused, match="replay"):
        gate.admit("a", s, 1_000_001)
    assert gate.seen(s.run_id)
    gate.admit("a", _start(), 1_000_002)  # another run id is fine
    with pytest.raises(StartRefused, match="expired"):
        gate.admit("a", s, s.expires_ms + 60_000)  # forgotten from the replay set, but expired anyway
    assert not gate.seen(s.run_id)


def test_node_config_has_an_fl_section_with_defaults():
    cfg = NodeConfig()
    assert cfg.fl.enabled and cfg.fl.partition == "" and cfg.fl.controllers == ()
    assert FLProgress.WIRE_KIND == "fl.progress"  # type: ignore[attr-defined]


async def test_swarm_mode_needs_a_member_with_the_trainer_role(tmp_path):
    from edgenode.security import SwarmGuard, issue_certificate
    from edgenode.tasks import Submitter

    CLOCK = SystemClock()
    now_ms = CLOCK.now_ms

    admin = Identity.generate()

    def cert(who: Identity, roles: tuple[str, ...], serial: int) -> bytes:
        return issue_certificate(admin, who.public_key, roles, serial=serial, now_ms=now_ms() - 1000, expires_ms=0)

    n = 2
    net = MemNetwork(seed=4)
    ids = [Identity.generate() for _ in range(n)]
    nodes = [memnet_runtime(net, NodeConfig(fl=FLSection(partition=f"{k}/{n}")), ident=i, fl=True,
                            guard=SwarmGuard(i, cert(i, ("executor", "trainer"), 10 + k), CLOCK,
                                             swarm=admin.public_key))
             for k, i in enumerate(ids)]
    for node in nodes:  # each node's FL controller (behind the node's guard) starts right after it
        await node.start()
    net.full_mesh([x.peer_id for x in nodes])
    for node in nodes:  # as tests/security/conftest.py: certificates known before the run
        for other in nodes:
            if other is not node:
                assert node.guard is not None
                await node.guard.require(other.peer_id)
    ctrls = _controllers(nodes)
    clients = []

    async def client(roles: tuple[str, ...], serial: int) -> Submitter:
        ident = Identity.generate()
        t = net.add_node(ident)
        await t.start()
        sub = Submitter(ident, t, guard=SwarmGuard(ident, cert(ident, roles, serial), CLOCK))
        clients.append(sub)
        await sub.join([node.transport.listen_addrs[0] for node in nodes])
        return sub

    def new_start(rounds: int):
        return make_start(model="digits", rounds=rounds, strategy="fedavg", quorum=n, round_timeout_s=30.0,
                          now_ms=now_ms(), start_delay_ms=100)

    try:
        plain = await client(("submitter",), 50)
        with pytest.raises(NoFLNode, match="forbidden"):
            await launch(plain.transport, plain.signer, new_start(1), peers=plain.transport.peers(), ack_timeout=1.0)
        trainer = await client(("trainer",), 51)
        run = new_start(2)
        summaries = await asyncio.wait_for(
            launch(trainer.transport, trainer.signer, run, peers=trainer.transport.peers(), expected=n), 120)
    finally:
        for sub in clients:
            await sub.close()
            await sub.transport.stop()
        for node in nodes:
            await node.stop()
    assert [s.round for s in summaries] == [0, 1] and summaries[-1].nodes == n
    assert all(c.counters["started"] == 1 for c in ctrls)
