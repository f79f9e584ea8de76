"""Run many :class:`~federated.rounds.RoundEngine` nodes in one process on a virtual clock.

Deterministic and fast: no sockets, no threads, no sleeps.  Every published
update reaches every other node after ``latency`` virtual seconds (except those
``drop`` rejects).  Used by tests, the benchmarks and ``edgenode fl start --local``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .data import DigitsPartition
from .errors import FederatedLocalError
from .flower import StrategyConfig
from .models import TrainConfig, make_model
from .rounds import LocalTrainer, ModelTrainer, PublishUpdate, RoundConfig, RoundDone, RoundEngine, TrainResult

__all__ = ["LocalSigner", "PoisonedTrainer", "SimResult", "simulate", "digits_swarm"]


class LocalSigner:
    """An Ed25519 signer from a 32-byte seed (pynacl), for simulations and tests."""

    def __init__(self, seed: bytes) -> None:
        import nacl.signing

        if len(seed) != 32:
            raise FederatedLocalError("seed must be 32 bytes")
        self._key = nacl.signing.SigningKey(seed)
        self._pub = bytes(self._key.verify_key)

    @classmethod
    def from_index(cls, i: int) -> LocalSigner:
        return cls(i.to_bytes(4, "big") * 8)

    @property
    def public_key(self) -> bytes:
        return self._pub

    def sign(self, data: bytes) -> bytes:
        sig: bytes = self._key.sign(data).signature
        return sig


class PoisonedTrainer:
    """A Byzantine peer: publishes Gaussian noise of ``scale`` instead of trained weights."""

    def __init__(self, inner: LocalTrainer, *, scale: float = 10.0, seed: int = 0) -> None:
        self._inner = inner
        self._rng = np.random.default_rng(seed)
        self.scale = scale

    def train(self, weights: Sequence[npt.NDArray[np.float32]], round: int, proximal_mu: float) -> TrainResult:
        res = self._inner.train(weights, round, proximal_mu)
        noisy = [(self._rng.standard_normal(w.shape) * self.scale).astype(np.float32) for w in res.weights]
        return TrainResult(noisy, res.num_examples, res.metrics)

    def evaluate(self, weights: Sequence[npt.NDArray[np.float32]]) -> tuple[float, float]:
        return self._inner.evaluate(weights)


@dataclass
class SimResult:
    """Per-node history of closed rounds, and the engines (for counters)."""

    engines: list[RoundEngine]
    history: list[list[RoundDone]] = field(default_factory=list)
    update_bytes: int = 0
    """Size of one encoded update."""

    def mean_accuracy(self, round_index: int, nodes: Sequence[int] | None = None) -> float:
        idx = range(len(self.engines)) if nodes is None else nodes
        return float(np.mean([self.history[i][round_index].accuracy for i in idx]))


def simulate(
    engines: Sequence[RoundEngine],
    *,
    latency: float = 0.01,
    drop: Callable[[int, int, int], bool] | None = None,
    start_at: Sequence[float] | None = None,
    max_time: float = 1e6,
    on_round: Callable[[int, RoundDone], None] | None = None,
) -> SimResult:
    """Drive ``engines`` until all finish (each needs ``max_rounds``) or ``max_time`` passes.

    ``drop(src, dst, round)`` returning True loses that delivery; ``start_at[i]`` delays node i.
    """
    if any(e.config.max_rounds is None for e in engines):
        raise FederatedLocalError("simulate() needs engines with max_rounds set")
    res = SimResult(list(engines), [[] for _ in engines])
    queue: list[tuple[float, int, int, int, bytes]] = []  # (time, seq, dst, src, data)
    seq = 0
    starts = list(start_at) if start_at is not None else [0.0] * len(engines)
    pending_start = sorted(range(len(engines)), key=lambda i: starts[i])

    def act(i: int, events: list[object], now: float) -> None:
        nonlocal seq
        for ev in events:
            if isinstance(ev, PublishUpdate):
                res.update_bytes = len(ev.data)
                for j in range(len(engines)):
                    if j != i and not (drop is not None and drop(i, j, ev.round)):
                        heapq.heappush(queue, (now + latency, seq, j, i, ev.data))
                        seq += 1
            elif isinstance(ev, RoundDone):
                res.history[i].append(ev)
                if on_round is not None:
                    on_round(i, ev)

    now = 0.0
    for _ in range(10_000_000):
        if all(e.finished for e in engines) or now > max_time:
            break
        candidates: list[float] = []
        if pending_start:
            candidates.append(starts[pending_start[0]])
        if queue:
            candidates.append(queue[0][0])
        deadlines = [d for e in engines if (d := e.next_deadline()) is not None]
        if deadlines:
            candidates.append(min(deadlines))
        if not candidates:
            break
        now = max(now, min(candidates))
        while pending_start and starts[pending_start[0]] <= now:
            i = pending_start.pop(0)
            act(i, list(engines[i].start(now)), now)
        while queue and queue[0][0] <= now:
            _, _, dst, _src, data = heapq.heappop(queue)
            if engines[dst].current is not None or not engines[dst].finished:
                act(dst, list(engines[dst].receive(data, now)), now)
        for i, e in enumerate(engines):
            d = e.next_deadline()
            if d is not None and d <= now:
                act(i, list(e.handle_timer(now)), now)
    return res


def digits_swarm(
    num_nodes: int,
    *,
    rounds: int,
    model: str = "digits",
    strategy: StrategyConfig | None = None,
    quorum: int | None = None,
    round_timeout: float = 5.0,
    poisoned: int = 0,
    alpha: float = 0.5,
    seed: int = 0,
    train: TrainConfig | None = None,
) -> list[RoundEngine]:
    """Engines for ``num_nodes`` nodes on a Dirichlet split of digits; the first ``poisoned`` are Byzantine."""
    cfg = RoundConfig(
        quorum=quorum if quorum is not None else num_nodes,
        round_timeout=round_timeout,
        max_rounds=rounds,
        strategy=strategy if strategy is not None else StrategyConfig(),
    )
    engines = []
    for i in range(num_nodes):
        m = make_model(model, seed=seed)
        trainer: LocalTrainer = ModelTrainer(m, DigitsPartition(i, num_nodes, alpha, seed), train, seed=seed + i)
        if i < poisoned:
            trainer = PoisonedTrainer(trainer, seed=seed + i)
        engines.append(
            RoundEngine(
                model=model,
                initial_weights=m.get_weights(),
                trainer=trainer,
                signer=LocalSigner.from_index(seed * 100_000 + i + 1),
                config=cfg,
            )
        )
    return engines
