"""Federated learning on a node: gossip rounds over a :class:`~edgenode.net.Transport`.

Thin glue between :mod:`federated` (which knows nothing of edgenode) and the
node: the node's :class:`~edgenode.identity.Identity` signs updates, the
transport carries them on the model's topic, each published update's sha256
is noted in the ledger (kind ``model_update``), and every aggregated model is
exported to ONNX and hot-swapped into the :class:`~edgenode.inference.ModelRegistry`
under its hash, with the model's name as alias, so tasks that name the model
use the new version without a restart.

Who may contribute: in swarm mode (a :class:`~edgenode.security.SwarmGuard`) only
members whose certificate holds the ``trainer`` (or ``admin``) role, each update
gossiped by its own author; in open mode anyone, or only the peer ids of
``[fl] trainers`` when that list is set.  Everything else is refused in the topic
validator (not forwarded, counted by reason in :attr:`FederatedService.counters` and,
in swarm mode, in the guard's refusals) and again in the round engine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
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

from .errors import LocalError, SignatureError
from .identity import Identity, peer_id_from_public_key, verify
from .net import GossipMessage, Transport
from .security import Refused, SwarmGuard

__all__ = [
    "FL_TOPIC_PREFIX",
    "LEDGER_KIND",
    "TRAINER_ROLE",
    "fl_topic",
    "identity_verify",
    "ModelSink",
    "TrainerCheck",
    "FederatedService",
]

FL_TOPIC_PREFIX = "/edgenode/fl/"
"""Gossip topics of federated models: ``/edgenode/fl/<model>/1``."""
LEDGER_KIND = "model_update"
"""Ledger entry kind noting a published update: body ``{"model", "round", "sha256"}`` (canonical JSON)."""
TRAINER_ROLE = "trainer"
"""The certificate role a swarm member needs for its model updates to count."""


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


class TrainerCheck:
    """Whose model updates count: swarm members with the trainer role, or an open-mode allow-list.

    ``refusal(author)`` returns None for an allowed author, else a :class:`Refused` with its reason.
    """

    def __init__(self, guard: SwarmGuard | None = None, trainers: Collection[str] = ()) -> None:
        self.guard = guard
        self.trainers = frozenset(trainers)

    def refusal(self, author: bytes) -> Refused | None:
        try:
            peer = peer_id_from_public_key(author)
        except LocalError:
            return Refused("bad_certificate", "the update's author is not an Ed25519 key")
        if self.guard is not None:
            try:
                member = self.guard.check_known(peer)
            except Refused as exc:
                return exc
            if not member.has_role(TRAINER_ROLE):
                return Refused("role_not_allowed", f"{peer} lacks the {TRAINER_ROLE} role")
        if self.trainers and peer not in self.trainers:
            return Refused("role_not_allowed", f"{peer} is not in [fl] trainers")
        return None

    def allowed(self, author: bytes) -> bool:
        """The engine's ``authorize`` hook."""
        return self.refusal(author) is None

    def validator(self, model: str, shapes: list[tuple[int, ...]], counters: dict[str, int]) -> Callable[
            [str, bytes], bool]:
        """The model topic's gossip validator: rate, signature, shapes, author == origin, trainer."""
        guard = self.guard

        def validate(sender: str, data: bytes) -> bool:
            if guard is not None:
                now_s = guard.now_ms() / 1000.0
                if not guard.abuse.allow(sender, "gossip", now_s):
                    banned = guard.abuse.is_banned(sender, now_s)
                    return self._refuse(sender, Refused("penalised" if banned else "rate_limited", "fl gossip"),
                                        counters)
            try:
                upd = decode_update(data, verify=identity_verify, model=model, shapes=shapes)
            except BadUpdate as exc:
                counters["validator_rejected"] += 1
                if guard is not None and exc.reason == "signature":
                    guard.offence(sender, "invalid_signature", data)
                return False
            try:
                origin = peer_id_from_public_key(upd.author)
            except LocalError:
                origin = ""
            if origin != sender:
                return self._refuse(sender, Refused("wrong_holder", "an update must be gossiped by its author"),
                                    counters)
            why = self.refusal(upd.author)
            if why is not None:
                return self._refuse(sender, why, counters)
            return True

        return validate

    def _refuse(self, sender: str, exc: Refused, counters: dict[str, int]) -> bool:
        counters["validator_rejected"] += 1
        counters[f"refused_{exc.reason}"] = counters.get(f"refused_{exc.reason}", 0) + 1
        if self.guard is not None:
            self.guard.refuse(sender, exc)
        return False


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
        self._sub: AsyncIterator[GossipMessage] | None = None
        self._validate = self.trainers.validator(model, self._model.shapes, self.counters)
        """Gossip validator: forged, malformed, misattributed or unauthorised updates are not forwarded."""

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
