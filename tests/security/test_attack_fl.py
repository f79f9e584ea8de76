"""Hostile model updates through the model's gossip topic (issue 13, finding 4).

One update from a fresh key claiming a round far ahead used to make a node rejoin there
with that update's weights (1e6 everywhere: the model was taken over); in swarm mode the
model topic was not gated, so any key's update counted.  Now an update counts only from a
trainer (swarm: a member with the ``trainer`` role; open mode: ``[fl] trainers`` when set),
once per author and round, and a node rejoins only when two or more distinct authors are ahead.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from edgenode.fl import FederatedService, fl_topic
from edgenode.identity import Identity
from edgenode.net.memnet import MemNetwork
from edgenode.security import SwarmGuard, issue_certificate
from edgenode.tasks import Submitter, SystemClock
from federated import DigitsPartition, ModelUpdate, RoundConfig, StrategyConfig, encode_update, make_model
from federated.rounds import min_authors_for
from tests.runtimes import memnet_runtime

pytestmark = pytest.mark.timeout(120)

CLOCK = SystemClock()
now_ms = CLOCK.now_ms
MODEL = "digits"


def hostile_update(ident: Identity, round_: int, value: float = 1e6) -> bytes:
    """A validly signed update of ``ident`` whose every weight is ``value``."""
    shapes = make_model(MODEL).shapes
    upd = ModelUpdate(MODEL, round_, ident.public_key, tuple(np.full(s, value, np.float32) for s in shapes), 10)
    return encode_update(upd, ident)


def median_rounds(rounds: int) -> RoundConfig:
    strategy = StrategyConfig("fedmedian", num_malicious=1)
    assert min_authors_for(strategy) == 3  # the quorum lets the median outvote one hostile update
    return RoundConfig(quorum=3, round_timeout=30.0, max_rounds=rounds, strategy=strategy)


def assert_sane(histories: list[list], rounds: int) -> None:
    for h in histories:
        assert [d.round for d in h] == list(range(rounds))  # nobody jumped ahead
        assert float(max(np.max(np.abs(w)) for w in h[-1].weights)) < 1e3  # nobody's weights were taken over
        assert h[-1].accuracy >= 0.6


async def test_one_update_claiming_a_round_ahead_does_not_take_over_the_model() -> None:
    n, rounds = 3, 3
    net = MemNetwork(seed=21)
    ids = [Identity.generate() for _ in range(n)]
    nodes = [net.add_node(i) for i in ids]
    services = [FederatedService(t, i, loader=DigitsPartition(k, n), rounds=median_rounds(rounds), seed=k)
                for k, (i, t) in enumerate(zip(ids, nodes, strict=True))]
    mallory_id = Identity.generate()
    mallory = net.add_node(mallory_id)
    for t in [*nodes, mallory]:
        await t.start()
    net.full_mesh([t.peer_id for t in [*nodes, mallory]])
    for s in services:
        s.open()
    await net.drain()
    # a fresh key claims round 2 (two ahead) with weights of 1e6, then tries a second vote in that round
    await mallory.publish(fl_topic(MODEL), hostile_update(mallory_id, 2))
    await mallory.publish(fl_topic(MODEL), hostile_update(mallory_id, 2, 2e6))
    await net.drain()
    try:
        histories = await asyncio.wait_for(asyncio.gather(*(s.run() for s in services)), timeout=90)
    finally:
        for t in [*nodes, mallory]:
            await t.stop()
    assert all(s.engine.counters["rejoins"] == 0 for s in services)
    assert all(s.engine.counters["drop_duplicate"] >= 1 for s in services)  # one vote per author and round
    assert_sane(histories, rounds)


async def test_open_mode_trainers_list_refuses_sybil_keys_at_the_topic() -> None:
    n, rounds = 3, 2
    net = MemNetwork(seed=22)
    ids = [Identity.generate() for _ in range(n)]
    nodes = [net.add_node(i) for i in ids]
    trainers = [i.peer_id for i in ids]
    services = [FederatedService(t, i, loader=DigitsPartition(k, n), rounds=median_rounds(rounds), seed=k,
                                 trainers=trainers)
                for k, (i, t) in enumerate(zip(ids, nodes, strict=True))]
    sybil_ids = [Identity.generate() for _ in range(2)]
    sybils = [net.add_node(i) for i in sybil_ids]
    for t in [*nodes, *sybils]:
        await t.start()
    net.full_mesh([t.peer_id for t in [*nodes, *sybils]])
    for s in services:
        s.open()
    await net.drain()
    # two Sybil keys agree on round 0 (a FedMedian majority with the node's own) and on a round ahead
    for sid, t in zip(sybil_ids, sybils, strict=True):
        await t.publish(fl_topic(MODEL), hostile_update(sid, 0))
        await t.publish(fl_topic(MODEL), hostile_update(sid, 1))
    await net.drain()
    try:
        histories = await asyncio.wait_for(asyncio.gather(*(s.run() for s in services)), timeout=90)
    finally:
        for t in [*nodes, *sybils]:
            await t.stop()
    for s in services:  # refused at the topic with a reason, so never relayed nor counted
        assert s.counters["refused_role_not_allowed"] == 4
        assert s.engine.counters["rejoins"] == 0
    assert all(d.updates == n for h in histories for d in h)  # the honest trainers only
    assert_sane(histories, rounds)


async def test_swarm_mode_counts_updates_of_trainers_only() -> None:
    admin = Identity.generate()
    serial = iter(range(100, 200))

    def cert(who: Identity, roles: tuple[str, ...]) -> bytes:
        return issue_certificate(admin, who.public_key, roles, serial=next(serial), now_ms=now_ms() - 1000,
                                 expires_ms=0)

    n, rounds = 3, 2
    net = MemNetwork(seed=23)
    ids = [Identity.generate() for _ in range(n)]
    runtimes = [memnet_runtime(net, ident=i,
                               guard=SwarmGuard(i, cert(i, ("executor", "trainer")), CLOCK, swarm=admin.public_key))
                for i in ids]  # no FL controller: the services below are the trainers
    for rt in runtimes:
        await rt.start()
    net.full_mesh([x.peer_id for x in runtimes])
    for rt in runtimes:
        for other in runtimes:
            if other is not rt:
                assert rt.guard is not None
                await rt.guard.require(other.peer_id)
    services = [FederatedService(rt.transport, rt.identity, loader=DigitsPartition(k, n),
                                 rounds=median_rounds(rounds), seed=k, guard=rt.guard)
                for k, rt in enumerate(runtimes)]
    # a member without the trainer role, and a trainer relaying a fresh key's update
    plain_id, relay_id, fresh = Identity.generate(), Identity.generate(), Identity.generate()
    clients = []
    for ident, roles in ((plain_id, ("submitter",)), (relay_id, ("trainer",))):
        t = net.add_node(ident)
        await t.start()
        sub = Submitter(ident, t, guard=SwarmGuard(ident, cert(ident, roles), CLOCK))
        await sub.join([rt.transport.listen_addrs[0] for rt in runtimes])
        clients.append(sub)
    for s in services:
        s.open()
    await net.drain()
    plain, relay = clients
    await plain.transport.publish(fl_topic(MODEL), hostile_update(plain_id, 0))
    await plain.transport.publish(fl_topic(MODEL), hostile_update(plain_id, 2))
    await relay.transport.publish(fl_topic(MODEL), hostile_update(fresh, 2))
    await net.drain()
    try:
        histories = await asyncio.wait_for(asyncio.gather(*(s.run() for s in services)), timeout=90)
    finally:
        for sub in clients:
            await sub.close()
            await sub.transport.stop()
        for rt in runtimes:
            await rt.stop()
    refused = [s.counters for s in services]
    assert sum(c.get("refused_role_not_allowed", 0) for c in refused) >= 2
    assert sum(c.get("refused_wrong_holder", 0) for c in refused) >= 1
    for rt in runtimes:  # counted in the node's security metrics too
        assert (rt.node.metrics.registry.get_sample_value("edgenode_security_refusals_total",
                                                          {"reason": "role_not_allowed"}) or 0) >= 1
    assert all(s.engine.counters["rejoins"] == 0 for s in services)
    assert all(d.updates == n for h in histories for d in h)
    assert_sane(histories, rounds)
