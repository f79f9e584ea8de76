"""Federated learning on a node: gossip rounds over a :class:`~edgenode.net.Transport`.

Thin glue between :mod:`federated` (which knows nothing of edgenode) and the
node: the node's :class:`~edgenode.identity.Identity` signs updates, the
transport carries them on the model's topic, each published update's sha256
is noted in the ledger (kind ``model_update``), and every aggregated model is
exported to ONNX and hot-swapped into the :class:`~edgenode.inference.ModelRegistry`
under its hash, with the model's name as alias, so tasks that name the model
use the new version without a restart.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from federated import (
    BadUpdate,
    DataLoader,
    DenseModel,
    ModelTrainer,
    PublishUpdate,
    RoundConfig,
    RoundDone,
    RoundEngine,
    TrainConfig,
    decode_update,
    make_model,
    to_onnx_bytes,
)
from federated.gossip import GossipDriver
from federated.rounds import Event

from .errors import SignatureError
from .identity import Identity, verify
from .net import GossipMessage, Transport

__all__ = ["FL_TOPIC_PREFIX", "LEDGER_KIND", "fl_topic", "identity_verify", "ModelSink", "FederatedService"]

FL_TOPIC_PREFIX = "/edgenode/fl/"
"""Gossip topics of federated models: ``/edgenode/fl/<model>/1``."""
LEDGER_KIND = "model_update"
"""Ledger entry kind noting a published update: body ``{"model", "round", "sha256"}`` (canonical JSON)."""


def fl_topic(model: str) -> str:
    """The gossip topic that carries ``model``'s updates."""
    return f"{FL_TOPIC_PREFIX}{model}/1"


def identity_verify(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """:func:`edgenode.identity.verify` as the boolean verifier :mod:`federated` takes."""
    try:
        verify(public_key, data, signature)
    except SignatureError:
        return False
    return True


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
        clock: Callable[[], float] | None = None,
        seed: int = 0,
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
        self.engine = RoundEngine(
            model=model,
            initial_weights=self._model.get_weights(),
            trainer=ModelTrainer(make_model(model, seed=seed), loader, train, seed=seed),
            signer=identity,
            config=rounds if rounds is not None else RoundConfig(),
            verify=identity_verify,
        )
        self.model_hashes: list[str] = []
        """sha256 of every ONNX model hot-swapped into the registry, in order."""
        self.counters: dict[str, int] = {"validator_rejected": 0, "ledger_notes": 0}
        self._sub: AsyncIterator[GossipMessage] | None = None

    def _validate(self, _sender: str, data: bytes) -> bool:
        """Gossip validator: forged or malformed updates are not forwarded."""
        try:
            decode_update(data, verify=identity_verify, model=self.model_name, shapes=self._model.shapes)
        except BadUpdate:
            self.counters["validator_rejected"] += 1
            return False
        return True

    async def _on_event(self, ev: Event) -> None:
        if isinstance(ev, PublishUpdate) and self._note is not None:
            note = {"model": self.model_name, "round": ev.round, "sha256": ev.digest}
            body = json.dumps(note, sort_keys=True, separators=(",", ":")).encode()
            await self._note(LEDGER_KIND, body)
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
        clock = self._clock if self._clock is not None else asyncio.get_running_loop().time
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
            aclose = getattr(sub, "aclose", None)
            if aclose is not None:
                await aclose()
