"""FederatedService over memnet: 20 nodes, ledger notes, ONNX hot-swap into the real ModelRegistry."""

from __future__ import annotations

import asyncio
import json

import numpy as np

from edgenode.fl import LEDGER_KIND, FederatedService, fl_topic
from edgenode.identity import Identity
from edgenode.inference import ModelRegistry
from edgenode.net.memnet import MemNetwork
from federated import DigitsPartition, RoundConfig, load_digits_split, make_model
from tests.runtimes import memnet_runtime


async def test_gossip_rounds_over_memnet_hot_swap_models(tmp_path):
    n, rounds = 20, 12
    net = MemNetwork(seed=3)
    ids = [Identity.generate() for _ in range(n)]
    nodes = [net.add_node(i) for i in ids]
    notes: list[list[tuple[str, bytes]]] = [[] for _ in range(n)]
    registry = ModelRegistry(tmp_path / "models")
    services = []
    for k, (ident, t) in enumerate(zip(ids, nodes, strict=True)):

        async def note(kind: str, body: bytes, k: int = k) -> None:
            notes[k].append((kind, body))

        services.append(
            FederatedService(
                t,
                ident,
                loader=DigitsPartition(k, n, alpha=0.5),
                rounds=RoundConfig(quorum=n, round_timeout=60.0, max_rounds=rounds),
                registry=registry if k == 0 else None,
                note=note,
                seed=k,
            )
        )
    for t in nodes:
        await t.start()
    for k in range(n):  # a ring plus chords
        for d in (1, 5):
            await nodes[k].connect(nodes[(k + d) % n].listen_addrs[0])
    for s in services:
        s.open()
    await net.drain()
    try:
        histories = await asyncio.wait_for(asyncio.gather(*(s.run() for s in services)), timeout=240)
    finally:
        for t in nodes:
            await t.stop()
    assert all(len(h) == rounds for h in histories)
    acc = float(np.mean([h[-1].accuracy for h in histories]))
    assert acc >= 0.90
    assert all(h[-1].updates == n for h in histories)
    # ledger: one model_update note per published update, naming its sha256
    kinds = {kind for kind, _ in notes[0]}
    assert kinds == {LEDGER_KIND} and len(notes[0]) == rounds
    body = json.loads(notes[0][-1][1])
    assert body["model"] == "digits" and body["round"] == rounds - 1 and len(body["sha256"]) == 64
    # hot-swap: the alias names the last model; running it through the registry matches numpy
    hashes = services[0].model_hashes
    assert len(set(hashes)) == rounds
    assert registry.resolve("digits") == hashes[-1]
    _, test = load_digits_split()
    m = make_model("digits")
    m.set_weights(histories[0][-1].weights)
    out = registry.run("digits", {"x": test.x})
    probs = next(iter(out.values()))
    assert np.array_equal(np.asarray(probs).argmax(1), m.predict(test.x))
    assert fl_topic("digits") == "/edgenode/fl/digits/1"


async def test_forged_updates_are_not_forwarded():
    net = MemNetwork(seed=1)
    a_id, b_id = Identity.generate(), Identity.generate()
    a, b = net.add_node(a_id), net.add_node(b_id)
    svc = FederatedService(b, b_id, loader=DigitsPartition(0, 2), rounds=RoundConfig(quorum=2, max_rounds=1))
    await a.start()
    await b.start()
    await a.connect(b.listen_addrs[0])
    svc.open()
    await net.drain()
    await a.publish(fl_topic("digits"), b"not an update")
    await net.drain()
    await a.stop()
    await b.stop()
    assert svc.counters["validator_rejected"] == 1


async def test_a_node_that_starts_late_rejoins_at_the_current_round():
    n, rounds = 4, 10
    net = MemNetwork(seed=5)
    ids = [Identity.generate() for _ in range(n)]
    nodes = [net.add_node(i) for i in ids]
    reached = asyncio.Event()

    def watch(ev) -> None:
        if ev.round >= 2:
            reached.set()

    cfg = RoundConfig(quorum=3, round_timeout=10.0, max_rounds=rounds)
    services = [
        FederatedService(t, i, loader=DigitsPartition(k, n), rounds=cfg, seed=k, on_round=watch if k == 0 else None)
        for k, (i, t) in enumerate(zip(ids, nodes, strict=True))
    ]
    for t in nodes:
        await t.start()
    for a in range(n):
        for b in range(a + 1, n):
            await nodes[a].connect(nodes[b].listen_addrs[0])
    for s in services[:3]:
        s.open()
    await net.drain()
    try:
        early = asyncio.gather(*(s.run() for s in services[:3]))
        await asyncio.wait_for(reached.wait(), timeout=60)
        late = await asyncio.wait_for(services[3].run(), timeout=120)  # subscribes only now
        peers = await asyncio.wait_for(early, timeout=120)
    finally:
        for t in nodes:
            await t.stop()
    engine = services[3].engine
    assert engine.counters["rejoins"] == 1
    assert late[0].round >= 2 and late[-1].round == rounds - 1
    assert all(h[-1].round == rounds - 1 for h in peers)
    assert late[-1].accuracy >= 0.85
    # the late node's first (round-0) update reached peers that were past it
    assert sum(s.engine.counters["drop_late"] for s in services[:3]) >= 1


async def test_service_attaches_to_running_nodes_and_notes_updates_in_their_ledgers(tmp_path):
    n, rounds = 3, 3
    net = MemNetwork(seed=9)
    runtimes = [memnet_runtime(net) for _ in range(n)]  # no FL controller: the services below train
    for k, rt in enumerate(runtimes):
        await rt.start(bootstrap=[runtimes[j].transport.listen_addrs[0] for j in range(k)])
    services = [
        FederatedService(rt.transport, rt.identity, loader=DigitsPartition(k, n),
                         rounds=RoundConfig(quorum=n, round_timeout=30.0, max_rounds=rounds),
                         note=rt.chain.append, seed=k)
        for k, rt in enumerate(runtimes)
    ]
    for s in services:
        s.open()
    await net.drain()
    try:
        await asyncio.wait_for(asyncio.gather(*(s.run() for s in services)), timeout=120)
        for rt in runtimes:
            await rt.chain.flush()
        heads = [await rt.chain.head() for rt in runtimes]
    finally:
        for rt in runtimes:
            await rt.stop()
    for head in heads:
        assert head is not None and head.kind == LEDGER_KIND
        assert json.loads(head.body)["round"] == rounds - 1
