"""The scenario's federated run, on the nodes' own FL controllers: the code ``edgenode run`` ships.

Every node of a swarm with ``[fl] enabled`` hosts an :class:`edgenode.fl.FLController`,
wired to the node as on a device (its transport, identity, clock, guard; updates noted
in its own ledger chain).  The first ``participants`` nodes have FL enabled, node ``i``
on digits share ``i/participants`` (:func:`node_fl_section`); the others answer
``disabled`` and relay.  A launcher peer on the same network seals one ``fl.start`` and
gathers the nodes' signed progress reports with :func:`edgenode.fl.launch` -- what
``edgenode fl start --bootstrap`` does -- so the report's FL curve measures the shipped
controller, gossip service, topics and ``model_update`` ledger bodies.  A poisoned node
publishes noise in place of its trained update
(:class:`simnet._byzantine.ByzantineTransport`).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import math
from collections.abc import Callable, Sequence

from edgenode.config import FLSection as NodeFLSection
from edgenode.fl import FLController, FLStart, RoundSummary, launch, make_start
from edgenode.identity import Identity
from edgenode.net import Transport

from ._backend import FLRound
from ._scenario import FLSection

__all__ = ["fl_model_name", "node_fl_section", "fl_start", "centralized_accuracy", "launch_fl", "START_DELAY_MS"]

START_DELAY_MS = 1_000
"""Round 0 starts this long after the launch (every node subscribes to the model's topic first)."""


def fl_model_name(fl: FLSection) -> str:
    """The federated package's model name for the scenario's ``fl.model``."""
    return "digits-mlp" if fl.model == "mlp" else "digits-logreg"


def node_fl_section(fl: FLSection, index: int, seed: int) -> NodeFLSection:
    """Node ``index``'s ``[fl]`` section: participants train on share ``index/participants``."""
    if not fl.enabled or index >= fl.participants:
        return NodeFLSection(enabled=False)
    return NodeFLSection(partition=f"{index}/{fl.participants}", alpha=fl.alpha, seed=seed, epochs=fl.local_epochs)


def fl_start(fl: FLSection, seed: int, now_ms: int, malicious: int = 1) -> FLStart:
    """The start command the launcher seals (run id derived from the seed: runs repeat)."""
    return make_start(
        model=fl_model_name(fl), rounds=fl.rounds, strategy=fl.strategy,
        quorum=max(1, math.ceil(fl.quorum * fl.participants)), round_timeout_s=fl.round_timeout_s,
        malicious=max(1, malicious), now_ms=now_ms, start_delay_ms=START_DELAY_MS,
        run_id=hashlib.sha256(f"simnet:{seed}:fl".encode()).hexdigest()[:16],
    )  # fmt: skip


def centralized_accuracy(fl: FLSection, seed: int) -> float:
    """Accuracy of the same model trained on all the training data at once (the reference line)."""
    from federated.data import load_digits_split
    from federated.models import TrainConfig, make_model

    train, test = load_digits_split(seed=seed)
    model = make_model(fl_model_name(fl), seed=seed)
    model.fit(train.x, train.y, TrainConfig(epochs=max(5, fl.rounds * fl.local_epochs * 5)), seed=seed)
    _loss, acc = model.evaluate(test.x, test.y)
    return float(acc)


def _dropped(controllers: Sequence[FLController]) -> int:
    """Updates the nodes refused (validators) or dropped (engines), duplicates aside."""
    total = 0
    for ctl in controllers:
        svc = ctl.service
        if svc is None:
            continue
        total += svc.counters.get("validator_rejected", 0)
        total += sum(v for k, v in svc.engine.counters.items() if k.startswith("drop_") and k != "drop_duplicate")
    return total


async def launch_fl(
    start: FLStart,
    launcher: Transport,
    signer: Identity,
    peers: Sequence[str],
    controllers: Sequence[FLController],
    on_round: Callable[[FLRound], None],
) -> None:
    """Send ``start`` to ``peers`` from the started ``launcher`` and report each round they report.

    ``controllers`` are the nodes' (to count dropped updates).  Raises what
    :func:`edgenode.fl.launch` raises (no node accepted, progress stalled).
    """
    importlib.import_module("flwr.common")  # flwr sets its logger to DEBUG when first imported
    logging.getLogger("flwr").setLevel(logging.WARNING)  # one INFO line per aggregation otherwise

    def report(s: RoundSummary) -> None:
        on_round(FLRound(s.round + 1, s.accuracy_mean, s.loss_mean, round(s.updates_mean), _dropped(controllers)))

    await launch(launcher, signer, start, peers=peers, expected=len(peers), on_round=report)
