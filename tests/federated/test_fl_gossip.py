"""Serverless gossip FL on digits: 20 non-IID nodes against centralised training, and poisoning."""

from __future__ import annotations

import numpy as np
import pytest

from federated import StrategyConfig, TrainConfig, load_digits_split, make_model
from federated.sim import digits_swarm, simulate


@pytest.fixture(scope="module")
def centralised() -> float:
    train, test = load_digits_split()
    m = make_model("digits")
    m.fit(train.x, train.y, TrainConfig(epochs=40))
    return m.evaluate(test.x, test.y)[1]


def test_twenty_non_iid_nodes_approach_centralised_accuracy(centralised):
    engines = digits_swarm(20, rounds=15, alpha=0.5)
    res = simulate(engines)
    per_round = [res.mean_accuracy(r) for r in range(15)]
    assert centralised >= 0.95
    assert per_round[-1] >= 0.90
    assert per_round[-1] >= centralised - 0.06
    assert per_round[-1] > per_round[0]
    # full broadcast + FedAvg: every node holds the same model after each round
    finals = [e.weights[0] for e in engines]
    assert all(np.allclose(finals[0], w, atol=1e-5) for w in finals[1:])
    assert all(e.counters["rounds_quorum"] == 15 for e in engines)


def test_robust_strategy_survives_twenty_percent_poisoning():
    honest = range(4, 20)
    robust = simulate(digits_swarm(20, rounds=12, poisoned=4, strategy=StrategyConfig("multikrum", num_malicious=4)))
    fedavg = simulate(digits_swarm(20, rounds=12, poisoned=4, strategy=StrategyConfig("fedavg")))
    assert robust.mean_accuracy(11, honest) >= 0.90
    assert fedavg.mean_accuracy(11, honest) < 0.6


def test_lossy_network_closes_rounds_by_deadline_and_drops_late_updates():
    engines = digits_swarm(6, rounds=4, round_timeout=2.0)
    # node 5 starts late (a straggler): the others close round 0 at its deadline without it,
    # and its round-0 update then arrives late; node 0's round-1 update to node 1 is lost.
    res = simulate(
        engines,
        drop=lambda src, dst, rnd: src == 0 and dst == 1 and rnd == 1,
        start_at=[0, 0, 0, 0, 0, 3.0],
    )
    assert all(len(h) == 4 for h in res.history)
    assert all(h[0].reason == "deadline" and h[0].updates == 5 for h in res.history[:5])
    assert [e.counters["drop_late"] for e in engines[:5]] == [1, 1, 1, 1, 1]
    # node 1 lacks node 0's round-1 update; it closes round 1 once its peers' round-2 updates show they moved on
    assert (res.history[1][1].reason, res.history[1][1].updates) == ("overtaken", 5)
    assert engines[1].counters["rounds_overtaken"] == 1
    assert res.history[5][0].updates == 6  # the straggler found everyone's round-0 update waiting
