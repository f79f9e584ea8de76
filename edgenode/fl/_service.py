"""One model's gossip rounds on a node, over a :class:`~edgenode.net.Transport`.

Thin glue between :mod:`federated` (which knows nothing of edgenode) and the
node: the node's :class:`~edgenode.identity.Identity` signs updates, the
transport carries them on the model's topic (:func:`~edgenode.fl.fl_topic`), each
published update's sha256 is noted in the ledger (kind ``model_update``, body
:func:`~edgenode.fl.update_note`), and every aggregated model is exported to ONNX
and hot-swapped into the :class:`~edgenode.inference.ModelRegistry` under its hash,
with the model's name as alias, so tasks that name the model use the new version
without a restart.  Whose updates count is :class:`~edgenode.fl.TrainerCheck`'s call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Protocol

from federated import (
    DataLoader,
    DenseModel,
    ModelTrainer,
    PublishUpdate,
    RoundConfig,
    RoundDone,
    RoundEngine,
    TrainConfig,
    make_model,
    to_onnx_bytes,
)
from federated.gossip import GossipDriver
from federated.rounds import Event

from ..clock import Clock
from ..identity import Identity
from ..net import Subscription, Transport
from ..security import SwarmGuard
from ._gate import TrainerCheck, identity_verify
from ._messages import LEDGER_KIND, fl_topic, update_note

__all__ = ["ModelSink", "Note", "FederatedService"]


class ModelSink(Protocol):
    """Where aggregated models go: :class:`edgenode.inference.ModelRegistry` is one."""

    def add(self, source: bytes) -> str: ...

    def set_alias(self, name: str, ref: str) -> str: ...


Note = Callable[[str, bytes], Awaitable[object]]
"""``await note(kind, body)``: append a ledger entry (e.g. ``node.chain.append``)."""


class FederatedService:
    """One model's gossip rounds on one node."""

    def __init__(
        self,
        transport: Transport,
        identity: Identity,
        *,
        loader: DataLoader,
        model: str = "digits",
        rounds: RoundConfig | None = None,
        train: TrainConfig | None = None,
        registry: ModelSink | None = None,
        note: Note | None = None,
        on_round: Callable[[RoundDone], None] | None = None,
        clock: Clock | None = None,
        seed: int = 0,
        guard: SwarmGuard | None = None,
        trainers: Collection[str] = (),
    ) -> None:
        self.transport = transport
        self.identity = identity
        self.model_name = model
        self.topic = fl_topic(model)
        self._model: DenseModel = make_model(model, seed=seed)
        self._registry = registry
        self._note = note
        self._on_round = on_round
        self._clock = clock
        self.trainers = TrainerCheck(guard, trainers)
        """Whose updates count (swarm: members with the trainer role; open: ``trainers`` if set)."""
        self.engine = RoundEngine(
            model=model,
            initial_weights=self._model.get_weights(),
            trainer=ModelTrainer(make_model(model, seed=seed), loader, train, seed=seed),
            signer=identity,
            config=rounds if rounds is not None else RoundConfig(),
            verify=identity_verify,
            authorize=self.trainers.allowed if guard is not None or trainers else None,
        )
        self.model_hashes: list[str] = []
        """sha256 of every ONNX model hot-swapped into the registry, in order."""
        self.counters: dict[str, int] = {"validator_rejected": 0, "ledger_notes": 0}
        """``validator_rejected`` (every update not forwarded), ``refused_<reason>`` (by reason), ``ledger_notes``."""
        self._sub: Subscription | None = None
        self._validate = self.trainers.validator(model, self._model.shapes, self.counters)
        """Gossip validator: forged, malformed, misattributed or unauthorised updates are not forwarded."""

    async def _on_event(self, ev: Event) -> None:
        if isinstance(ev, PublishUpdate) and self._note is not None:
            await self._note(LEDGER_KIND, update_note(self.model_name, ev.round, ev.digest))
            self.counters["ledger_notes"] += 1
        elif isinstance(ev, RoundDone):
            if self._registry is not None:
                self._model.set_weights(ev.weights)
                h = self._registry.add(to_onnx_bytes(self._model))
                self._registry.set_alias(self.model_name, h)
                self.model_hashes.append(h)
            if self._on_round is not None:
                self._on_round(ev)

    def open(self) -> None:
        """Subscribe to the model's topic now (``run`` does it if not done), so no early update is missed."""
        if self._sub is None:
            self.transport.set_validator(self.topic, self._validate)
            self._sub = self.transport.subscribe(self.topic)

    async def run(self) -> list[RoundDone]:
        """Run rounds until ``max_rounds`` (or forever); returns the closed rounds."""
        # rounds are timed on monotonic seconds: the node's clock, else the loop's (virtual time follows it)
        node_clock = self._clock
        clock = asyncio.get_running_loop().time
        if node_clock is not None:
            clock = lambda: node_clock.monotonic_ms() / 1000.0  # noqa: E731
        self.open()
        sub = self._sub
        assert sub is not None

        async def incoming() -> AsyncIterator[bytes]:
            async for msg in sub:
                yield msg.data

        async def publish(data: bytes) -> None:
            await self.transport.publish(self.topic, data)

        driver = GossipDriver(self.engine, publish=publish, incoming=incoming(), clock=clock, on_event=self._on_event)
        try:
            return await driver.run()
        finally:
            self._sub = None
            await sub.aclose()
