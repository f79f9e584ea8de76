"""Gossip FL on the swarm's own transports: federated's sans-IO round engine, driven here.

Each participant runs a :class:`federated.rounds.RoundEngine` (Flower strategies
do the aggregation) and gossips its signed updates on the model's topic over
its node's real transport, so kills, partitions and lossy links hit FL too.
Each update's hash is noted in the node's ledger (kind ``model_update``).
Poisoned participants publish noise (:class:`federated.sim.PoisonedTrainer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edgenode.identity import Identity
from edgenode.net import GossipMessage, NetError, Transport
from edgenode.tasks import ChainWriter

from ._backend import FLRound
from ._scenario import FLSection

__all__ = ["FLParticipant", "run_gossip_fl", "centralized_accuracy", "fl_model_name"]


def fl_model_name(fl: FLSection) -> str:
    """The federated package's model name for the scenario's ``fl.model``."""
    return "digits-mlp" if fl.model == "mlp" else "digits-logreg"


@dataclass
class FLParticipant:
    """One node taking part in FL."""

    identity: Identity
    transport: Transport
    chain: ChainWriter | None
    """Where the node notes its update hashes (None: not noted)."""
    poisoned: bool = False
    history: list[tuple[int, float, float, int]] = field(default_factory=list)
    """(round, accuracy, loss, updates) per closed round."""


class _Switchable:
    """A trainer that publishes noise while ``poisoned`` is set, and trains honestly otherwise."""

    def __init__(self, honest: object, poisoned: object, part: FLParticipant) -> None:
        self._honest = honest
        self._poisoned = poisoned
        self._part = part

    def train(self, weights: Sequence[npt.NDArray[np.float32]], round: int, proximal_mu: float) -> object:
        inner = self._poisoned if self._part.poisoned else self._honest
        return inner.train(weights, round, proximal_mu)  # type: ignore[attr-defined]

    def evaluate(self, weights: Sequence[npt.NDArray[np.float32]]) -> tuple[float, float]:
        res: tuple[float, float] = self._honest.evaluate(weights)  # type: ignore[attr-defined]
        return res


def centralized_accuracy(fl: FLSection, seed: int) -> float:
    """Accuracy of the same model trained on all the training data at once (the reference line)."""
    from federated.data import load_digits_split
    from federated.models import TrainConfig, make_model

    train, test = load_digits_split(seed=seed)
    model = make_model(fl_model_name(fl), seed=seed)
    model.fit(train.x, train.y, TrainConfig(epochs=max(5, fl.rounds * fl.local_epochs * 5)), seed=seed)
    _loss, acc = model.evaluate(test.x, test.y)
    return float(acc)


async def run_gossip_fl(
    fl: FLSection,
    parts: list[FLParticipant],
    seed: int,
    on_round: Callable[[FLRound], None],
) -> None:
    """Run ``fl.rounds`` gossip rounds among ``parts``; report each round's mean honest accuracy."""
    from federated.data import DigitsPartition
    from federated.flower import StrategyConfig
    from federated.models import TrainConfig, make_model
    from federated.rounds import ModelTrainer, RoundConfig, RoundEngine
    from federated.sim import PoisonedTrainer

    importlib.import_module("flwr.common")  # flwr sets its logger to DEBUG when first imported
    logging.getLogger("flwr").setLevel(logging.WARNING)  # one INFO line per aggregation otherwise
    name = fl_model_name(fl)
    n = len(parts)
    n_bad = sum(1 for p in parts if p.poisoned)
    cfg = RoundConfig(
        quorum=max(1, math.ceil(fl.quorum * n)),
        round_timeout=fl.round_timeout_s,
        max_rounds=fl.rounds,
        strategy=StrategyConfig(name=fl.strategy, num_malicious=max(1, n_bad)),
    )
    topic = f"simnet/fl/{name}/1"
    loop = asyncio.get_running_loop()
    reported: set[int] = set()
    engines: list[RoundEngine] = []
    for i, p in enumerate(parts):
        model = make_model(name, seed=seed)
        honest = ModelTrainer(
            model, DigitsPartition(i, n, fl.alpha, seed), TrainConfig(epochs=fl.local_epochs), seed=seed + i
        )
        trainer = _Switchable(honest, PoisonedTrainer(honest, seed=seed + i), p)
        engines.append(
            RoundEngine(model=name, initial_weights=model.get_weights(), trainer=trainer, signer=p.identity, config=cfg)  # type: ignore[arg-type]
        )

    def dropped() -> int:
        return sum(v for e in engines for k, v in e.counters.items() if k.startswith("drop_") and k != "drop_duplicate")

    def maybe_report() -> None:
        honest = [p for p in parts if not p.poisoned]
        for rnd in sorted({r for p in honest for r, *_ in p.history}):
            if rnd in reported:
                continue
            rows = [h for p in honest for h in p.history if h[0] == rnd]
            # report a round once every honest participant closed it (stragglers: at the end)
            if len(rows) < len(honest):
                continue
            reported.add(rnd)
            on_round(
                FLRound(
                    round=rnd + 1,
                    accuracy=float(np.mean([h[1] for h in rows])),
                    loss=float(np.mean([h[2] for h in rows])),
                    updates=round(float(np.mean([h[3] for h in rows]))),
                    dropped=dropped(),
                )
            )

    async def act(p: FLParticipant, events: Sequence[object]) -> None:
        from federated.rounds import PublishUpdate, RoundDone

        for ev in events:
            if isinstance(ev, PublishUpdate):
                with contextlib.suppress(NetError):
                    await p.transport.publish(topic, ev.data)
                if p.chain is not None:
                    await p.chain.append("model_update", ev.digest.encode())
            elif isinstance(ev, RoundDone):
                p.history.append((ev.round, ev.accuracy, ev.loss, ev.updates))
                maybe_report()

    async def one(p: FLParticipant, eng: RoundEngine, sub: AsyncIterator[GossipMessage]) -> None:
        it = sub.__aiter__()
        nxt: asyncio.Future[GossipMessage] | None = None
        try:
            await act(p, eng.start(loop.time()))
            while not eng.finished:
                deadline = eng.next_deadline()
                if deadline is None:
                    await act(p, eng.start(loop.time()))
                    continue
                if nxt is None:
                    nxt = asyncio.ensure_future(it.__anext__())
                done, _ = await asyncio.wait({nxt}, timeout=max(0.0, deadline - loop.time()))
                if done:
                    try:
                        msg = nxt.result()
                    except StopAsyncIteration:
                        return
                    nxt = None
                    await act(p, eng.receive(msg.data, loop.time()))
                else:
                    await act(p, eng.handle_timer(loop.time()))
        finally:
            if nxt is not None:
                nxt.cancel()
            with contextlib.suppress(NetError, AttributeError):
                await sub.aclose()  # type: ignore[attr-defined]

    # every participant subscribes before the first update flies
    subs = [p.transport.subscribe(topic) for p in parts]
    await asyncio.gather(*(one(p, e, s) for p, e, s in zip(parts, engines, subs, strict=True)))
    # rounds some honest node never closed (it was down): report what the others reached
    good = [p for p in parts if not p.poisoned]
    for rnd in sorted({r for p in good for r, *_ in p.history} - reported):
        rows = [h for p in good for h in p.history if h[0] == rnd]
        reported.add(rnd)
        on_round(
            FLRound(
                rnd + 1,
                float(np.mean([h[1] for h in rows])),
                float(np.mean([h[2] for h in rows])),
                round(float(np.mean([h[3] for h in rows]))),
                dropped(),
            )
        )
