"""A node's federated side: idle until a signed start command, then run it and report.

Every node with ``[fl] enabled`` runs an :class:`FLController`: it serves
:data:`~edgenode.fl.FL_CONTROL_PROTOCOL` and follows :data:`~edgenode.fl.FL_CONTROL_TOPIC`,
checks each :class:`~edgenode.fl.FLStart` (:class:`~edgenode.fl.StartGate`; in swarm mode
the author needs the ``trainer`` role), starts a :class:`~edgenode.fl.FederatedService` run
with its parameters, and after every round gossips a sealed :class:`~edgenode.fl.FLProgress`
on :data:`~edgenode.fl.FL_PROGRESS_TOPIC`.  :func:`node_controller` wires one to a node
the way ``edgenode run`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

from federated import FederatedError, RoundConfig, RoundDone, StrategyConfig
from federated.models import MODEL_FACTORIES, make_model

from .. import wire
from ..config import FLSection
from ..errors import EdgenodeError, LocalError, RemoteError
from ..identity import Identity
from ..net import GossipMessage, NetError, Transport, follow_gossip
from ..security import Refused, SwarmGuard
from ..tasks import Clock, SystemClock
from ..tasksets import Spawner, TaskSet
from ._config import make_loader, train_config
from ._gate import StartGate, StartRefused, TrainerCheck, min_authors_of
from ._messages import (
    FL_CONTROL_PROTOCOL,
    FL_CONTROL_TOPIC,
    FL_PROGRESS_TOPIC,
    MAX_START_DELAY_MS,
    FLAck,
    FLProgress,
    FLStart,
    fl_topic,
)
from ._service import FederatedService, ModelSink, Note

__all__ = ["FLController", "FLHost", "node_controller"]

log = logging.getLogger("edgenode.fl")


def _seed_of(run_id: str) -> int:
    return int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:4], "big")


class FLController:
    """A node's federated side: idles until a valid start command, then runs it and reports."""

    def __init__(
        self,
        transport: Transport,
        identity: Identity,
        section: FLSection | None = None,
        *,
        registry: ModelSink | None = None,
        note: Note | None = None,
        clock: Clock | None = None,
        guard: SwarmGuard | None = None,
        spawn: Spawner | None = None,
    ) -> None:
        self.transport = transport
        self.identity = identity
        self.section = section if section is not None else FLSection()
        self.gate = StartGate(self.section)
        self._registry = registry
        self._note = note
        self._clock: Clock = clock or SystemClock()
        self.guard = guard
        """Swarm mode: members only; a start, and a model update, needs the ``trainer`` (or ``admin``) role."""
        self._tasks = TaskSet(spawn, log=log)
        """Topic followers and progress reports (in the runtime's task group when ``spawn`` is given)."""
        self._runs: dict[str, asyncio.Task[None]] = {}
        self.active: str | None = None
        """Run id of the run in progress, if any."""
        self.results: dict[str, list[RoundDone]] = {}
        """Closed rounds (:class:`federated.RoundDone`) of every finished run, by run id."""
        self.service: FederatedService | None = None
        """The service of the run in progress, or of the last run (its ``engine.counters``, ``counters``)."""
        self.counters: dict[str, int] = {"started": 0, "refused": 0, "progress_sent": 0, "failed": 0}
        self.idle_counters: dict[str, int] = {"validator_rejected": 0}
        """Model updates refused on the model topics between runs (``refused_<reason>``)."""

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        """Serve the control protocol and follow the control topic (the transport must be started)."""
        t, g = self.transport, self.guard
        if g is None:
            t.set_validator(FL_CONTROL_TOPIC, self._valid_start)
            t.set_validator(FL_PROGRESS_TOPIC, _is_sealed_progress)
            t.serve(FL_CONTROL_PROTOCOL, self._handle)
        else:
            t.set_validator(FL_CONTROL_TOPIC, g.gate(self._valid_start))
            t.set_validator(FL_PROGRESS_TOPIC, g.gate(_is_sealed_progress))
            t.serve(FL_CONTROL_PROTOCOL, g.guard_handler("request", self._handle))
        self._spawn(follow_gossip(t.subscribe(FL_CONTROL_TOPIC), self._on_control, log, "fl gossip"))
        # Subscribed so that progress reports are relayed through this node to the launcher.
        self._spawn(follow_gossip(t.subscribe(FL_PROGRESS_TOPIC), _ignore, log, "fl gossip"))
        # Model topics stay subscribed between runs: gossipsub refuses to re-graft a mesh for a
        # while after a peer leaves a topic, so a run right after another would lose updates.
        for model in sorted(MODEL_FACTORIES):
            # Between runs too, only well-formed updates of allowed trainers are relayed.
            check = TrainerCheck(g, self.section.trainers)
            t.set_validator(fl_topic(model), check.validator(model, make_model(model).shapes, self.idle_counters))
            self._spawn(follow_gossip(t.subscribe(fl_topic(model)), _ignore, log, "fl gossip"))

    async def stop(self) -> None:
        """Cancel the run in progress and stop following the topics."""
        runs = list(self._runs.values())
        for task in runs:
            task.cancel()
        for task in runs:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._tasks.cancel()
        self._runs.clear()
        self.active = None

    async def wait(self, run_id: str) -> list[RoundDone]:
        """Wait for run ``run_id`` (already accepted) to finish; its closed rounds."""
        task = self._runs.get(run_id)
        if task is not None:
            await task
        return self.results.get(run_id, [])

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(coro)

    # -- commands -------------------------------------------------------------------
    def _valid_start(self, _sender: str, data: bytes) -> bool:
        """Gossip validator: forged, malformed or expired commands are not forwarded."""
        try:
            _env, start = wire.open_as(FLStart, data)
        except RemoteError:
            return False
        return start.expires_ms > self._clock.now_ms()

    async def _on_control(self, msg: GossipMessage) -> None:
        env, start = wire.open_as(FLStart, msg.data)
        if self.gate.seen(start.run_id):
            return
        try:
            self._launch(env.author_id, start)
        except StartRefused as exc:
            self.counters["refused"] += 1
            log.info("fl start refused", extra={"run_id": start.run_id, "reason": exc.reason})

    async def _handle(self, _sender: str, data: bytes) -> bytes:
        env, start = wire.open_as(FLStart, data)
        if self.gate.seen(start.run_id) and (start.run_id in self._runs or start.run_id in self.results):
            return wire.seal(self.identity, FLAck(start.run_id, self.identity.peer_id, True, "running"))
        try:
            self._launch(env.author_id, start)
        except StartRefused as exc:
            self.counters["refused"] += 1
            return wire.seal(self.identity, FLAck(start.run_id, self.identity.peer_id, False, str(exc)))
        # Relay it, so nodes the launcher is not connected to hear it too.
        with contextlib.suppress(NetError):
            await self.transport.publish(FL_CONTROL_TOPIC, data)
        return wire.seal(self.identity, FLAck(start.run_id, self.identity.peer_id, True, "started"))

    def _launch(self, author_id: str, start: FLStart) -> None:
        if self.active is not None:
            raise StartRefused("busy", f"run {self.active} in progress")
        now = self._clock.now_ms()
        if self.guard is not None:
            try:
                member = self.guard.check_known(author_id)
            except Refused as exc:
                raise StartRefused("forbidden", str(exc)) from exc
            if not member.has_role("trainer"):
                raise StartRefused("forbidden", f"{author_id} lacks the trainer role")
        self.gate.admit(author_id, start, now)
        sent: list[asyncio.Task[None]] = []
        hashes: list[str] = []

        def on_round(ev: RoundDone) -> None:
            digest = hashes[-1] if self._registry is not None and hashes else ""
            report = FLProgress(start.run_id, self.identity.peer_id, ev.round, start.rounds, float(ev.accuracy),
                                float(ev.loss), ev.updates, ev.reason, digest)
            sent.append(asyncio.ensure_future(self._report(report)))

        try:
            rounds = RoundConfig(
                quorum=start.quorum, round_timeout=start.round_timeout_s, max_rounds=start.rounds,
                strategy=StrategyConfig(start.strategy, num_malicious=start.malicious),
                rejoin_quorum=self.section.rejoin_quorum, min_authors=min_authors_of(start),
            )
            svc = FederatedService(
                self.transport, self.identity, loader=make_loader(self.section, self.identity.peer_id),
                model=start.model, rounds=rounds, train=train_config(self.section), registry=self._registry,
                note=self._note, on_round=on_round, clock=self._clock, seed=_seed_of(start.run_id),
                guard=self.guard, trainers=self.section.trainers,
            )
            hashes = svc.model_hashes  # the service appends this round's hash before calling on_round
        except (FederatedError, LocalError) as exc:
            raise StartRefused("config", str(exc)) from exc
        svc.open()  # subscribe to the model's topic now, before round 0 starts anywhere
        self.active = start.run_id
        self.service = svc
        self.counters["started"] += 1
        delay = min(max(0, start.start_ms - now), MAX_START_DELAY_MS) / 1000
        self._runs[start.run_id] = asyncio.ensure_future(self._run(start, svc, delay, sent))
        log.info("fl run started", extra={"run_id": start.run_id, "model": start.model, "rounds": start.rounds})

    async def _run(self, start: FLStart, svc: FederatedService, delay: float, sent: list[asyncio.Task[None]]) -> None:
        try:
            await asyncio.sleep(delay)  # scheduled start, not a wait for a condition
            history = await svc.run()
            self.results[start.run_id] = list(history)
            log.info("fl run done", extra={"run_id": start.run_id, "rounds": len(history)})
        except (FederatedError, EdgenodeError) as exc:
            self.counters["failed"] += 1
            self.results[start.run_id] = []
            log.warning("fl run failed", extra={"run_id": start.run_id, "error": str(exc)})
        finally:
            self.active = None
            if sent:
                await asyncio.gather(*sent, return_exceptions=True)

    async def _report(self, report: FLProgress) -> None:
        try:
            await self.transport.publish(FL_PROGRESS_TOPIC, wire.seal(self.identity, report))
            self.counters["progress_sent"] += 1
        except NetError as exc:
            log.debug("progress not sent", extra={"error": str(exc)})


async def _ignore(_msg: GossipMessage) -> None:
    return None


def _is_sealed_progress(_sender: str, data: bytes) -> bool:
    try:
        env, p = wire.open_as(FLProgress, data)
    except RemoteError:
        return False
    return env.author_id == p.peer_id


class _Chain(Protocol):
    async def append(self, kind: str, body: bytes) -> object: ...


class FLHost(Protocol):
    """What :func:`node_controller` takes of a node (:class:`edgenode.node.Node` is one)."""

    @property
    def transport(self) -> Transport: ...

    @property
    def identity(self) -> Identity: ...

    @property
    def chain(self) -> _Chain: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def guard(self) -> SwarmGuard | None: ...


def node_controller(
    node: FLHost, section: FLSection, *, registry: ModelSink | None = None, spawn: Spawner | None = None
) -> FLController:
    """``node``'s FL controller, wired as ``edgenode run`` wires it.

    Same transport (and so the same topics), identity, clock and swarm guard as the node;
    each published update is noted in the node's own ledger chain; aggregated models go
    to ``registry`` (the node's :class:`~edgenode.inference.ModelRegistry`; None: kept
    only in memory); ``spawn``: the runtime's task group.  Start it after the node, stop it before.
    """
    return FLController(node.transport, node.identity, section, registry=registry, note=node.chain.append,
                        clock=node.clock, guard=node.guard, spawn=spawn)
