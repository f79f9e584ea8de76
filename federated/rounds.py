"""Sans-IO gossip rounds: train, publish, collect until quorum or deadline, aggregate, evaluate.

:class:`RoundEngine` is a plain object driven by its caller: ``start(now)``,
``receive(data, now)`` for every update heard on the model's topic, and
``handle_timer(now)`` once ``now >= next_deadline()``.  Each returns events
(:class:`PublishUpdate`, :class:`RoundDone`, :class:`Rejoined`) for the caller
to act on (gossip the bytes, note the hash in a ledger, hot-swap the model).
It never reads a clock, sleeps or touches a socket.

Rules:

* an update whose author ``authorize`` refuses (not a trainer of the swarm) is dropped
  (``drop_author``); every other rule counts authors, one update per author per round;
* an update for the current round is kept (one per author);
* one for the next round is buffered (a faster peer has moved on); once ``quorum - 1`` of
  them are buffered the current round closes early (``"overtaken"``);
* one for a round further ahead is remembered, one per author (its newest); once
  ``rejoin_quorum`` distinct authors (never fewer than two) are two or more rounds ahead,
  this node is behind (e.g. restarted): it rejoins at the highest round that many authors
  have reached, warm-starting from the coordinate-wise median of their weights -- one
  update can neither move this node nor replace its model;
* one for a past round is late: dropped and counted;
* a round with fewer than ``min_authors`` distinct authors closes on this node's own
  weights (not aggregated), so a robust strategy never aggregates fewer updates than it
  needs to outvote its tolerated Byzantine peers;
* bad bytes, forged signatures, another model or other shapes are dropped and
  counted by reason (``drop_decode``, ``drop_signature``, ``drop_model``, ``drop_shape``);
  every buffer is bounded (``drop_full``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from .data import DataLoader
from .errors import AggregationFailed, BadUpdate, FederatedLocalError
from .flower import (
    Aggregator,
    Contribution,
    ModelUpdate,
    Signer,
    StrategyConfig,
    Verifier,
    decode_update,
    ed25519_verify,
    encode_update,
    update_digest,
)
from .models import DenseModel, TrainConfig, Weights

__all__ = [
    "TrainResult",
    "LocalTrainer",
    "ModelTrainer",
    "RoundConfig",
    "PublishUpdate",
    "RoundDone",
    "Rejoined",
    "Event",
    "GossipRound",
    "RoundEngine",
    "Authorize",
    "min_authors_for",
]

Authorize = Callable[[bytes], bool]
"""``authorize(author_public_key) -> may contribute``: e.g. a swarm member with the trainer role."""

_MAX_BUFFERED_ROUNDS = 4
"""Rounds ahead of the current one whose updates are buffered."""


def min_authors_for(strategy: StrategyConfig) -> int:
    """Fewest distinct updates ``strategy`` needs to outvote its ``num_malicious`` Byzantine peers.

    FedMedian and FedTrimmedAvg need a majority (``2f + 1``), Krum and MultiKrum ``2f + 3``,
    Bulyan ``4f + 3``; the other strategies average and tolerate nobody (1).
    """
    f = max(0, strategy.num_malicious)
    if strategy.name in ("fedmedian", "trimmedavg"):
        return 2 * f + 1
    if strategy.name in ("krum", "multikrum"):
        return 2 * f + 3
    if strategy.name == "bulyan":
        return 4 * f + 3
    return 1


@dataclass(frozen=True, eq=False)
class TrainResult:
    """What local training produced."""

    weights: Weights
    """Trained weights."""
    num_examples: int
    """Examples trained on."""
    metrics: Mapping[str, float] = field(default_factory=dict)
    """Training metrics (``train_loss``)."""


class LocalTrainer(Protocol):
    """Local training and evaluation (pure computation, no I/O)."""

    def train(self, weights: Sequence[npt.NDArray[np.float32]], round: int, proximal_mu: float) -> TrainResult: ...

    def evaluate(self, weights: Sequence[npt.NDArray[np.float32]]) -> tuple[float, float]:
        """``(loss, accuracy)`` of ``weights`` on local test data."""
        ...


class ModelTrainer:
    """A :class:`LocalTrainer` for a :class:`~federated.models.DenseModel` on a :class:`DataLoader`."""

    def __init__(
        self, model: DenseModel, loader: DataLoader, config: TrainConfig | None = None, *, seed: int = 0
    ) -> None:
        self.model = model
        self.loader = loader
        self.config = config if config is not None else TrainConfig()
        self.seed = seed

    def train(self, weights: Sequence[npt.NDArray[np.float32]], round: int, proximal_mu: float) -> TrainResult:
        data = self.loader.train_data()
        self.model.set_weights(weights)
        cfg = self.config
        if proximal_mu != cfg.proximal_mu:
            cfg = TrainConfig(cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.l2, proximal_mu)
        loss = self.model.fit(data.x, data.y, cfg, seed=self.seed * 1_000_003 + round, anchor=list(weights))
        return TrainResult(self.model.get_weights(), len(data), {"train_loss": loss})

    def evaluate(self, weights: Sequence[npt.NDArray[np.float32]]) -> tuple[float, float]:
        test = self.loader.test_data()
        self.model.set_weights(weights)
        return self.model.evaluate(test.x, test.y)


@dataclass(frozen=True)
class RoundConfig:
    """How gossip rounds run."""

    quorum: int = 3
    """Updates (this node's own included) that close a round early."""
    round_timeout: float = 10.0
    """Seconds after a round starts at which it closes with whatever arrived."""
    min_updates: int = 1
    """Fewest updates to aggregate at the deadline; below it the deadline is extended once more."""
    max_rounds: int | None = None
    """Rounds are numbered from 0; stop after round ``max_rounds - 1`` (None: run forever).  A node
    that rejoins late stops with the others."""
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    """The Flower strategy that aggregates."""
    rejoin_quorum: int = 2
    """Distinct authors two or more rounds ahead that make this node rejoin (at least 2: one
    update never moves a node, nor replaces its model)."""
    min_authors: int = 1
    """Fewest distinct authors (own included) whose updates are aggregated; a round closing with
    fewer keeps this node's own weights (see :func:`min_authors_for`)."""

    def __post_init__(self) -> None:
        if self.quorum < 1 or self.round_timeout <= 0 or self.min_updates < 1:
            raise FederatedLocalError("quorum and min_updates must be >= 1 and round_timeout > 0")
        if self.rejoin_quorum < 2 or self.min_authors < 1:
            raise FederatedLocalError("rejoin_quorum must be >= 2 and min_authors >= 1")


@dataclass(frozen=True, eq=False)
class PublishUpdate:
    """Gossip ``data`` (this node's signed update) on the model's topic; note ``digest`` in the ledger."""

    round: int
    data: bytes
    digest: str


@dataclass(frozen=True, eq=False)
class RoundDone:
    """A round closed: the new model and how good it is."""

    round: int
    weights: Weights
    loss: float
    accuracy: float
    updates: int
    """Updates aggregated (own included)."""
    reason: str
    """``"quorum"``, ``"deadline"``, or ``"overtaken"`` (peers moved on: enough next-round updates arrived)."""
    aggregated: bool
    """False when the strategy failed and the node kept its own trained weights."""
    started_at: float
    finished_at: float


@dataclass(frozen=True)
class Rejoined:
    """Peers are ahead: this node jumped from ``from_round`` to ``to_round``."""

    from_round: int
    to_round: int


Event = PublishUpdate | RoundDone | Rejoined


@dataclass
class GossipRound:
    """Bookkeeping of one round: when it started, its deadline, updates by author."""

    number: int
    started_at: float
    deadline: float
    updates: dict[bytes, ModelUpdate] = field(default_factory=dict)


class RoundEngine:
    """One node's gossip rounds for one model (sans-IO)."""

    def __init__(
        self,
        *,
        model: str,
        initial_weights: Sequence[npt.NDArray[np.float32]],
        trainer: LocalTrainer,
        signer: Signer,
        config: RoundConfig = RoundConfig(),
        verify: Verifier = ed25519_verify,
        start_round: int = 0,
        authorize: Authorize | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self._trainer = trainer
        self._signer = signer
        self._verify = verify
        self._authorize = authorize
        self._weights: Weights = [np.asarray(w, np.float32).copy() for w in initial_weights]
        self._shapes = [tuple(w.shape) for w in self._weights]
        self._aggregator = Aggregator(config.strategy)
        self._round: GossipRound | None = None
        self._next_round = start_round
        self._buffer: dict[int, dict[bytes, ModelUpdate]] = {}
        """Updates of the current round before it starts and of the next round, by author."""
        self._ahead: dict[bytes, ModelUpdate] = {}
        """Per author, its newest update two or more rounds ahead (rejoin evidence)."""
        self._per_round = max(config.quorum, config.rejoin_quorum, config.min_authors)
        self._max_ahead = 4 * self._per_round
        self.counters: dict[str, int] = {
            "published": 0,
            "accepted": 0,
            "buffered": 0,
            "rounds": 0,
            "rounds_quorum": 0,
            "rounds_deadline": 0,
            "rounds_overtaken": 0,
            "rounds_too_few": 0,
            "rejoins": 0,
            "drop_late": 0,
            "drop_duplicate": 0,
            "drop_decode": 0,
            "drop_signature": 0,
            "drop_model": 0,
            "drop_shape": 0,
            "drop_ahead": 0,
            "drop_author": 0,
            "drop_full": 0,
            "aggregation_failed": 0,
        }
        """Monotonic counters; ``drop_<reason>`` per rejected update."""

    # -- state --------------------------------------------------------------------
    @property
    def round(self) -> int:
        """The round in progress (or the next one, before :meth:`start`)."""
        return self._round.number if self._round is not None else self._next_round

    @property
    def weights(self) -> Weights:
        """The current global model (after the last aggregation)."""
        return [w.copy() for w in self._weights]

    @property
    def finished(self) -> bool:
        """True once round ``max_rounds - 1`` is closed."""
        m = self.config.max_rounds
        return m is not None and self._round is None and self._next_round >= m

    @property
    def current(self) -> GossipRound | None:
        return self._round

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must next be called (None: nothing pending)."""
        return self._round.deadline if self._round is not None else None

    # -- inputs -------------------------------------------------------------------
    def start(self, now: float) -> list[Event]:
        """Begin the next round: train locally and return this node's update to publish."""
        if self._round is not None:
            raise FederatedLocalError("a round is already in progress")
        if self.finished:
            return []
        # Peers heard two or more rounds ahead before we started (a restart): rejoin there.
        rejoined = self._rejoin(now)
        if rejoined:
            return rejoined
        return self._begin(self._next_round, now)

    def receive(self, data: bytes, now: float) -> list[Event]:
        """Handle an encoded update heard from the network."""
        try:
            upd = decode_update(data, verify=self._verify, model=self.model, shapes=self._shapes)
        except BadUpdate as exc:
            self.counters[f"drop_{exc.reason}"] += 1
            return []
        if upd.author == self._signer.public_key:
            self.counters["drop_duplicate"] += 1
            return []
        if self._authorize is not None and not self._authorize(upd.author):
            self.counters["drop_author"] += 1
            return []
        return self._route(upd, now)

    def handle_timer(self, now: float) -> list[Event]:
        """Close the round if its deadline has passed."""
        r = self._round
        if r is None or now < r.deadline:
            return []
        if len(r.updates) < self.config.min_updates:
            r.deadline = now + self.config.round_timeout
            return []
        return self._close("deadline", now)

    # -- internals ----------------------------------------------------------------
    def _route(self, upd: ModelUpdate, now: float) -> list[Event]:
        """Place a verified, authorised update: current round, buffer, rejoin evidence, or drop."""
        if self.finished or upd.round < self.round:
            self.counters["drop_late"] += 1
            return []
        if self.config.max_rounds is not None and upd.round >= self.config.max_rounds:
            self.counters["drop_ahead"] += 1
            return []
        cur = self.round
        started = self._round is not None
        if upd.round == cur and started:
            return self._add(upd, now)
        if upd.round <= cur + 1:
            self._hold(upd)
            if started and len(self._buffer.get(cur + 1, {})) >= max(1, self.config.quorum - 1):
                # Enough peers have moved on to close the next round with us: stop waiting here.
                return self._close("overtaken", now)
            return []
        # Two or more rounds ahead: evidence that we are behind, one piece per author.
        old = self._ahead.get(upd.author)
        if old is not None and old.round >= upd.round:
            self.counters["drop_duplicate"] += 1
            return []
        if old is None and len(self._ahead) >= self._max_ahead:
            self.counters["drop_full"] += 1
            return []
        self._ahead[upd.author] = upd
        self.counters["buffered"] += 1
        return self._rejoin(now) if started else []

    def _hold(self, upd: ModelUpdate) -> None:
        slot = self._buffer.get(upd.round)
        if slot is not None and upd.author in slot:
            self.counters["drop_duplicate"] += 1
            return
        if slot is None and len(self._buffer) >= _MAX_BUFFERED_ROUNDS:
            self.counters["drop_full"] += 1
            return
        if slot is not None and len(slot) >= self._per_round:
            self.counters["drop_full"] += 1
            return
        self._buffer.setdefault(upd.round, {})[upd.author] = upd
        self.counters["buffered"] += 1

    def _rejoin(self, now: float) -> list[Event]:
        """Jump ahead when ``rejoin_quorum`` distinct authors are two or more rounds ahead."""
        need = self.config.rejoin_quorum
        if len(self._ahead) < need:
            return []
        target = sorted((u.round for u in self._ahead.values()), reverse=True)[need - 1]
        if target < self.round + 2:
            return []
        supporters = [u for u in self._ahead.values() if u.round >= target]
        old = self.round
        self.counters["rejoins"] += 1
        ahead = sorted(self._ahead.values(), key=lambda u: u.round)
        self._round = None
        self._buffer = {}
        self._ahead = {}
        self._weights = [
            np.median(np.stack([np.asarray(u.weights[i], np.float32) for u in supporters]), axis=0).astype(np.float32)
            for i in range(len(self._shapes))
        ]
        self._next_round = target
        events: list[Event] = [Rejoined(old, target)]
        for upd in ahead:  # those at the target round join it, the next round's are buffered
            if upd.round <= target + 1:
                self._hold(upd)
        events += self._begin(target, now)
        for upd in ahead:
            if upd.round > target + 1:
                events += self._route(upd, now)
        return events

    def _begin(self, number: int, now: float) -> list[Event]:
        r = GossipRound(number, now, now + self.config.round_timeout)
        self._round = r
        self._buffer = {k: b for k, b in self._buffer.items() if k >= number}
        for author, upd in list(self._ahead.items()):
            if upd.round <= number + 1:  # no longer two rounds ahead: an ordinary buffered update
                del self._ahead[author]
                self._hold(upd)
        mu = self.config.strategy.proximal_mu if self.config.strategy.name == "fedprox" else 0.0
        res = self._trainer.train(self.weights, number, mu)
        mine = ModelUpdate(
            model=self.model,
            round=number,
            author=self._signer.public_key,
            weights=tuple(np.asarray(w, np.float32) for w in res.weights),
            num_examples=res.num_examples,
            metrics=dict(res.metrics),
        )
        data = encode_update(mine, self._signer)
        r.updates[mine.author] = mine
        self.counters["published"] += 1
        events: list[Event] = [PublishUpdate(number, data, update_digest(data))]
        for upd in self._buffer.pop(number, {}).values():
            events += self._add(upd, now)
            if self._round is not r:
                break
        if self._round is r and len(r.updates) >= self.config.quorum:
            events += self._close("quorum", now)
        return events

    def _add(self, upd: ModelUpdate, now: float) -> list[Event]:
        r = self._round
        assert r is not None
        if upd.author in r.updates:
            self.counters["drop_duplicate"] += 1
            return []
        r.updates[upd.author] = upd
        self.counters["accepted"] += 1
        if len(r.updates) >= self.config.quorum:
            return self._close("quorum", now)
        return []

    def _close(self, reason: str, now: float) -> list[Event]:
        r = self._round
        assert r is not None
        own = [np.asarray(w, np.float32) for w in r.updates[self._signer.public_key].weights]
        aggregated = True
        if len(r.updates) < self.config.min_authors:
            # Too few distinct authors for the strategy to outvote a Byzantine one: keep our own.
            self.counters["rounds_too_few"] += 1
            aggregated = False
            new = own
        else:
            contribs = [Contribution(u.weights, u.num_examples, u.metrics) for u in r.updates.values()]
            try:
                new, _metrics = self._aggregator.aggregate(r.number + 1, contribs, self._weights)
            except AggregationFailed:
                self.counters["aggregation_failed"] += 1
                aggregated = False
                new = own
        self._weights = [np.asarray(w, np.float32) for w in new]
        loss, acc = self._trainer.evaluate(self.weights)
        self.counters["rounds"] += 1
        self.counters[f"rounds_{reason}"] += 1
        self._round = None
        self._next_round = r.number + 1
        events: list[Event] = [
            RoundDone(r.number, self.weights, loss, acc, len(r.updates), reason, aggregated, r.started_at, now)
        ]
        if not self.finished:
            events += self._begin(self._next_round, now)
        return events
