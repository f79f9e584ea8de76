"""The sans-IO round engine driven by hand with a fake clock and a fake trainer."""

from __future__ import annotations

import numpy as np
import pytest

from federated import (
    FederatedLocalError,
    ModelUpdate,
    PublishUpdate,
    Rejoined,
    RoundConfig,
    RoundDone,
    RoundEngine,
    StrategyConfig,
    TrainResult,
    encode_update,
)
from federated.rounds import min_authors_for
from federated.sim import LocalSigner

SHAPES = [(2, 2), (2,)]


class FakeTrainer:
    """Training adds ``step`` to every weight; accuracy is the mean weight (so tests can read it)."""

    def __init__(self, step: float = 1.0) -> None:
        self.step = step
        self.calls: list[int] = []

    def train(self, weights, round, proximal_mu):
        self.calls.append(round)
        return TrainResult([w + self.step for w in weights], 10, {"train_loss": 1.0})

    def evaluate(self, weights):
        return 0.5, float(np.mean(weights[0]))


def _zeros():
    return [np.zeros(s, np.float32) for s in SHAPES]


def _engine(idx=0, quorum=3, timeout=10.0, max_rounds=None, step=1.0, strategy="fedavg", start_round=0):
    t = FakeTrainer(step)
    e = RoundEngine(
        model="m",
        initial_weights=_zeros(),
        trainer=t,
        signer=LocalSigner.from_index(idx + 1),
        config=RoundConfig(quorum=quorum, round_timeout=timeout, max_rounds=max_rounds,
                           strategy=StrategyConfig(strategy)),
        start_round=start_round,
    )
    return e, t


def _peer_update(idx, round_, value, model="m", shapes=SHAPES):
    s = LocalSigner.from_index(idx + 1)
    u = ModelUpdate(model, round_, s.public_key, tuple(np.full(sh, value, np.float32) for sh in shapes), 10)
    return encode_update(u, s)


def _done(events):
    return [e for e in events if isinstance(e, RoundDone)]


def test_start_publishes_a_signed_update_and_exposes_a_deadline():
    e, t = _engine()
    events = e.start(now=100.0)
    assert len(events) == 1 and isinstance(events[0], PublishUpdate)
    assert events[0].round == 0 and len(events[0].digest) == 64
    assert e.next_deadline() == 110.0
    assert t.calls == [0]
    with pytest.raises(FederatedLocalError):
        e.start(now=101.0)


def test_quorum_closes_the_round_and_starts_the_next():
    e, _ = _engine(quorum=3)
    e.start(0.0)
    assert e.receive(_peer_update(1, 0, 3.0), 1.0) == []
    events = e.receive(_peer_update(2, 0, 5.0), 2.0)
    done = _done(events)
    assert len(done) == 1
    d = done[0]
    assert (d.round, d.updates, d.reason, d.aggregated) == (0, 3, "quorum", True)
    assert d.accuracy == pytest.approx(3.0)  # FedAvg of 1, 3, 5 with equal weights
    assert isinstance(events[-1], PublishUpdate) and events[-1].round == 1
    assert e.round == 1 and e.next_deadline() == 12.0
    assert e.counters["rounds_quorum"] == 1


def test_deadline_closes_with_what_arrived_and_stragglers_are_late():
    e, _ = _engine(quorum=5, timeout=10.0)
    e.start(0.0)
    e.receive(_peer_update(1, 0, 3.0), 1.0)
    assert e.handle_timer(9.99) == []
    events = e.handle_timer(10.0)
    d = _done(events)[0]
    assert (d.updates, d.reason) == (2, "deadline")
    assert d.accuracy == pytest.approx(2.0)
    # the straggler's round-0 update arrives during round 1: dropped and counted
    assert e.receive(_peer_update(2, 0, 9.0), 11.0) == []
    assert e.counters["drop_late"] == 1
    assert e.round == 1


def test_duplicates_and_own_echo_are_dropped():
    e, _ = _engine(quorum=5)
    mine = e.start(0.0)[0]
    assert isinstance(mine, PublishUpdate)
    e.receive(mine.data, 1.0)
    e.receive(_peer_update(1, 0, 3.0), 1.0)
    e.receive(_peer_update(1, 0, 3.0), 2.0)
    assert e.counters["drop_duplicate"] == 2
    assert e.counters["accepted"] == 1


def test_bad_updates_are_dropped_and_counted_by_reason():
    e, _ = _engine(quorum=5)
    e.start(0.0)
    good = _peer_update(1, 0, 1.0)
    forged = bytearray(good)
    forged[-70] ^= 0xFF
    e.receive(b"garbage", 1.0)
    e.receive(bytes(forged), 1.0)
    e.receive(_peer_update(2, 0, 1.0, model="other"), 1.0)
    e.receive(_peer_update(3, 0, 1.0, shapes=[(3, 3), (3,)]), 1.0)
    c = e.counters
    assert (c["drop_decode"], c["drop_signature"], c["drop_model"], c["drop_shape"]) == (1, 1, 1, 1)
    assert c["accepted"] == 0 and len(e.current.updates) == 1


def test_next_round_updates_are_buffered_and_close_an_overtaken_round():
    e, _ = _engine(quorum=3)
    e.start(0.0)
    assert e.receive(_peer_update(2, 1, 7.0), 0.5) == []  # a fast peer already in round 1
    assert e.counters["buffered"] == 1
    assert e.receive(_peer_update(1, 0, 3.0), 1.0) == []  # round 0: 2 of 3
    events = e.receive(_peer_update(3, 1, 7.0), 1.5)
    # quorum - 1 peers are in round 1: round 0 closes with what it has, round 1 starts with
    # the two buffered updates plus ours and closes by quorum at once
    done = _done(events)
    assert [(d.round, d.reason, d.updates) for d in done] == [(0, "overtaken", 2), (1, "quorum", 3)]
    assert done[0].accuracy == pytest.approx(2.0)  # mean of own 1.0 and peer 3.0
    assert done[1].accuracy == pytest.approx((3.0 + 7.0 + 7.0) / 3)
    assert e.round == 2


def test_updates_heard_before_a_restart_rejoin_at_start():
    e, _ = _engine(quorum=4)
    e.receive(_peer_update(1, 5, 2.0), 0.0)
    e.receive(_peer_update(2, 5, 2.0), 0.0)
    events = e.start(1.0)
    assert isinstance(events[0], Rejoined) and (events[0].from_round, events[0].to_round) == (0, 5)
    assert e.round == 5 and e.counters["rejoins"] == 1
    assert len(e.current.updates) == 3  # the peers' buffered updates and ours (trained from 2.0)


def test_updates_past_the_last_round_do_not_cause_a_rejoin():
    e, _ = _engine(quorum=3, max_rounds=3)
    e.start(0.0)
    assert e.receive(_peer_update(1, 5, 1.0), 1.0) == []
    assert (e.counters["drop_ahead"], e.counters["rejoins"], e.round) == (1, 0, 0)


def test_restarted_node_rejoins_at_the_current_round():
    e, t = _engine(quorum=4)  # a fresh process: starts at round 0 with initial weights
    e.start(0.0)
    assert e.receive(_peer_update(1, 7, 4.0), 1.0) == []  # one peer ahead is not enough
    events = e.receive(_peer_update(2, 7, 4.0), 1.0)
    assert isinstance(events[0], Rejoined) and (events[0].from_round, events[0].to_round) == (0, 7)
    assert e.round == 7
    # warm start from the peers' (median) weights: it trains from 4.0 to 5.0
    pub = [ev for ev in events if isinstance(ev, PublishUpdate)]
    assert pub and pub[0].round == 7
    assert t.calls == [0, 7]
    assert e.counters["rejoins"] == 1
    d = _done(e.receive(_peer_update(3, 7, 7.0), 2.0))[0]
    assert d.round == 7 and d.accuracy == pytest.approx((4.0 + 4.0 + 5.0 + 7.0) / 4)


def test_one_update_far_ahead_neither_moves_the_node_nor_replaces_its_model():
    e, t = _engine(quorum=3)
    e.start(0.0)
    for r in (2, 3, 9):  # one author, however many rounds it claims
        assert e.receive(_peer_update(1, r, 1e6), 1.0) == []
    assert (e.round, e.counters["rejoins"]) == (0, 0)
    assert e.counters["drop_duplicate"] == 0 and t.calls == [0]
    # a second author at round 3 makes a quorum of two: the target is the highest round two
    # authors reached (3, not the liar's 9), the warm start the median of the two
    events = e.receive(_peer_update(2, 3, 2.0), 2.0)
    assert isinstance(events[0], Rejoined) and events[0].to_round == 3
    assert float(np.max(e.weights[0])) < 1e6


def test_a_single_author_counts_once_per_round():
    e, _ = _engine(quorum=3)
    e.start(0.0)
    e.receive(_peer_update(1, 1, 5.0), 1.0)
    e.receive(_peer_update(1, 1, 5.0), 1.0)  # the same author again for the next round: not a second vote
    assert e.round == 0 and e.counters["rounds_overtaken"] == 0
    e.receive(_peer_update(1, 0, 5.0), 1.0)
    e.receive(_peer_update(1, 0, 6.0), 1.0)  # a second update of that author for this round
    assert len(e.current.updates) == 2 and e.counters["drop_duplicate"] == 2


def test_unauthorised_authors_are_dropped_and_counted():
    allowed = {LocalSigner.from_index(2).public_key}
    t = FakeTrainer()
    e = RoundEngine(model="m", initial_weights=_zeros(), trainer=t, signer=LocalSigner.from_index(1),
                    config=RoundConfig(quorum=2), authorize=allowed.__contains__)
    e.start(0.0)
    assert e.receive(_peer_update(5, 0, 1e6), 1.0) == []
    assert e.counters["drop_author"] == 1 and len(e.current.updates) == 1
    assert _done(e.receive(_peer_update(1, 0, 3.0), 1.0))[0].updates == 2


def test_a_round_with_fewer_authors_than_the_strategy_needs_keeps_own_weights():
    t = FakeTrainer()
    e = RoundEngine(model="m", initial_weights=_zeros(), trainer=t, signer=LocalSigner.from_index(1),
                    config=RoundConfig(quorum=2, min_authors=3, strategy=StrategyConfig("fedmedian")))
    e.start(0.0)
    d = _done(e.receive(_peer_update(1, 0, 1e6), 1.0))[0]  # own 1.0 and one hostile update: no median of two
    assert not d.aggregated and d.accuracy == pytest.approx(1.0) and e.counters["rounds_too_few"] == 1
    assert min_authors_for(StrategyConfig("fedmedian", num_malicious=1)) == 3
    assert min_authors_for(StrategyConfig("krum", num_malicious=1)) == 5
    assert min_authors_for(StrategyConfig("fedavg")) == 1
    with pytest.raises(FederatedLocalError):
        RoundConfig(rejoin_quorum=1)


def test_buffers_are_bounded():
    e, _ = _engine(quorum=2)  # not started yet: everything heard is buffered
    for k in range(1, 40):  # Sybil authors claiming rounds far ahead, all different
        e.receive(_peer_update(k, 100 + k, 1.0), 1.0)
    assert (e.counters["buffered"], e.counters["drop_full"]) == (8, 31)  # 4 x quorum authors ahead
    for k in range(1, 40):  # and many authors for the current and the next round
        e.receive(_peer_update(k, k % 2, 1.0), 1.0)
    assert (e.counters["buffered"], e.counters["drop_full"]) == (12, 31 + 35)  # quorum per round


def test_updates_before_start_are_kept():
    e, _ = _engine(quorum=2, start_round=3)
    e.receive(_peer_update(1, 3, 2.0), 0.0)
    d = _done(e.start(1.0))[0]
    assert (d.round, d.updates) == (3, 2)


def test_max_rounds_finishes_and_failed_aggregation_keeps_own_weights():
    e, _ = _engine(quorum=1, max_rounds=2, strategy="bulyan")
    events = e.start(0.0)
    done = _done(events)
    # quorum 1: each round closes on its own update; Bulyan needs >= 3 updates, so it fails
    assert [d.round for d in done] == [0, 1]
    assert not done[0].aggregated and e.counters["aggregation_failed"] == 2
    assert done[1].accuracy == pytest.approx(2.0)
    assert e.finished and e.next_deadline() is None
    assert e.start(5.0) == []
    assert e.receive(_peer_update(1, 1, 1.0), 6.0) == []
    assert e.counters["drop_late"] == 1
