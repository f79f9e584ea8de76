"""Federated runs on a running swarm: signed start commands, progress reports, the node's controller.

A light peer (``edgenode fl start --bootstrap ...``) seals an :class:`FLStart` and both
gossips it on :data:`FL_CONTROL_TOPIC` and sends it straight to the peers it joined
through (:data:`FL_CONTROL_PROTOCOL`, answered with a sealed :class:`FLAck`).  Every node
with ``[fl] enabled`` runs an :class:`FLController`: it checks the command
(:class:`StartGate`: signature, allowed controllers, expiry, replay by run id, bounds),
starts a :class:`~edgenode.fl_service.FederatedService` run with its parameters, and
after every round gossips a sealed :class:`FLProgress` on :data:`FL_PROGRESS_TOPIC`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import wire
from .errors import EdgenodeError, LocalError, RemoteError
from .fl_config import FLSection, make_loader, train_config
from .fl_service import FederatedService, ModelSink, Note, TrainerCheck, fl_topic
from .identity import Identity
from .net import GossipMessage, NetError, Transport, follow_gossip
from .security import Refused, SwarmGuard
from .tasks import Clock, SystemClock

if TYPE_CHECKING:  # federated is imported when a run starts
    from federated import RoundDone

__all__ = [
    "FL_CONTROL_TOPIC",
    "FL_PROGRESS_TOPIC",
    "FL_CONTROL_PROTOCOL",
    "MAX_START_TTL_MS",
    "MAX_START_DELAY_MS",
    "FLStart",
    "FLAck",
    "FLProgress",
    "StartRefused",
    "StartGate",
    "FLController",
]

log = logging.getLogger("edgenode.fl")

FL_CONTROL_TOPIC = "edgenode/fl-control/1"
"""Gossip topic of sealed :class:`FLStart` commands."""
FL_PROGRESS_TOPIC = "edgenode/fl-progress/1"
"""Gossip topic of sealed :class:`FLProgress` reports."""
FL_CONTROL_PROTOCOL = "/edgenode/fl-control/1"
"""Direct stream: request a sealed :class:`FLStart`, answer a sealed :class:`FLAck`."""
MAX_START_TTL_MS = 10 * 60_000
"""A start command may not live longer than this (bounds the replay memory)."""
MAX_START_DELAY_MS = 30_000
"""How far in the future a command may schedule round 0."""
_SKEW_MS = 30_000


@wire.message("fl.start", 1)
@dataclass(frozen=True)
class FLStart:
    """Start a federated run: every node that accepts it trains ``rounds`` rounds of ``model``."""

    run_id: str
    """Random hex id chosen by the launcher; names the run in progress reports, used against replay."""
    model: str
    """A :data:`federated.models.MODEL_FACTORIES` name (``digits``...)."""
    rounds: int
    """Rounds to run (numbered 0..rounds-1)."""
    strategy: str
    """A :data:`federated.STRATEGIES` name."""
    quorum: int
    """Updates (own included) that close a round early."""
    round_timeout_s: float
    """Seconds after which a round closes with what arrived."""
    malicious: int
    """Byzantine updates Krum/MultiKrum/Bulyan tolerate."""
    issued_ms: int
    """Unix ms when the launcher signed it."""
    expires_ms: int
    """Unix ms after which nodes refuse it."""
    start_ms: int
    """Unix ms at which round 0 starts (gives every node time to subscribe to the model's topic)."""


@wire.message("fl.ack", 1)
@dataclass(frozen=True)
class FLAck:
    """A node's answer to a start command sent to it directly."""

    run_id: str
    peer_id: str
    """The answering node (must be the envelope's author)."""
    accepted: bool
    """True when the node runs (or already runs) the run."""
    reason: str
    """``started``, ``running``, or why it refused (``disabled``, ``expired``, ``busy``...)."""


@wire.message("fl.progress", 1)
@dataclass(frozen=True)
class FLProgress:
    """One node's report after one round of a run."""

    run_id: str
    peer_id: str
    """The reporting node (must be the envelope's author)."""
    round: int
    rounds: int
    accuracy: float
    """Accuracy of the aggregated model on the node's test data."""
    loss: float
    updates: int
    """Updates aggregated this round (own included)."""
    reason: str
    """Why the round closed: ``quorum``, ``deadline`` or ``overtaken``."""
    model_sha256: str
    """Hash of the ONNX model hot-swapped into the node's registry (empty when it has none)."""


class StartRefused(RemoteError):
    """A start command this node will not run; ``reason`` is a short word for the ack."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class StartGate:
    """Which start commands a node accepts (sans-IO: the caller passes ``now_ms``)."""

    def __init__(self, section: FLSection) -> None:
        self.section = section
        self._seen: dict[str, int] = {}  # run id -> expires_ms

    def seen(self, run_id: str) -> bool:
        return run_id in self._seen

    def admit(self, author_id: str, start: FLStart, now_ms: int) -> None:
        """Accept ``start`` (remember its run id) or raise :class:`StartRefused`."""
        from federated import STRATEGIES
        from federated.models import MODEL_FACTORIES

        for run_id in [r for r, exp in self._seen.items() if exp + _SKEW_MS < now_ms]:
            del self._seen[run_id]
        sec = self.section
        if not sec.enabled:
            raise StartRefused("disabled")
        if sec.controllers and author_id not in sec.controllers:
            raise StartRefused("forbidden", f"{author_id} may not start runs")
        if start.run_id in self._seen:
            raise StartRefused("replay", start.run_id)
        if start.expires_ms <= now_ms:
            raise StartRefused("expired")
        if start.issued_ms > now_ms + _SKEW_MS or start.expires_ms - start.issued_ms > MAX_START_TTL_MS:
            raise StartRefused("bad-time", "issued in the future or lives too long")
        if start.model not in MODEL_FACTORIES or start.strategy not in STRATEGIES:
            raise StartRefused("unknown", f"model {start.model!r} or strategy {start.strategy!r}")
        if not 1 <= start.rounds <= sec.max_rounds or start.quorum < 1 or start.malicious < 0:
            raise StartRefused("bounds", f"rounds 1..{sec.max_rounds}, quorum >= 1")
        if not 0 < start.round_timeout_s <= 3600:
            raise StartRefused("bounds", "round_timeout_s in (0, 3600]")
        need = _min_authors(start)
        if start.quorum < need:
            raise StartRefused("bounds", f"{start.strategy} tolerating {start.malicious} needs quorum >= {need}")
        self._seen[start.run_id] = start.expires_ms


def _min_authors(start: FLStart) -> int:
    from federated import StrategyConfig
    from federated.rounds import min_authors_for

    return min_authors_for(StrategyConfig(start.strategy, num_malicious=start.malicious))


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
        round_clock: Callable[[], float] | None = None,
        guard: SwarmGuard | None = None,
    ) -> None:
        self.transport = transport
        self.identity = identity
        self.section = section if section is not None else FLSection()
        self.gate = StartGate(self.section)
        self._registry = registry
        self._note = note
        self._clock: Clock = clock or SystemClock()
        self._round_clock = round_clock
        self.guard = guard
        """Swarm mode: members only; a start, and a model update, needs the ``trainer`` (or ``admin``) role."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._runs: dict[str, asyncio.Task[None]] = {}
        self.active: str | None = None
        """Run id of the run in progress, if any."""
        self.results: dict[str, list[RoundDone]] = {}
        """Closed rounds (:class:`federated.RoundDone`) of every finished run, by run id."""
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
        from federated.models import MODEL_FACTORIES, make_model

        for model in sorted(MODEL_FACTORIES):
            # Between runs too, only well-formed updates of allowed trainers are relayed.
            check = TrainerCheck(g, self.section.trainers)
            t.set_validator(fl_topic(model), check.validator(model, make_model(model).shapes, self.idle_counters))
            self._spawn(follow_gossip(t.subscribe(fl_topic(model)), _ignore, log, "fl gossip"))

    async def stop(self) -> None:
        """Cancel the run in progress and stop following the topics."""
        tasks = [*self._tasks, *self._runs.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._runs.clear()
        self.active = None

    async def wait(self, run_id: str) -> list[RoundDone]:
        """Wait for run ``run_id`` (already accepted) to finish; its closed rounds."""
        task = self._runs.get(run_id)
        if task is not None:
            await task
        return self.results.get(run_id, [])

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        from federated import FederatedError, RoundConfig, StrategyConfig

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
                rejoin_quorum=self.section.rejoin_quorum, min_authors=_min_authors(start),
            )
            svc = FederatedService(
                self.transport, self.identity, loader=make_loader(self.section, self.identity.peer_id),
                model=start.model, rounds=rounds, train=train_config(self.section), registry=self._registry,
                note=self._note, on_round=on_round, clock=self._round_clock, seed=_seed_of(start.run_id),
                guard=self.guard, trainers=self.section.trainers,
            )
            hashes = svc.model_hashes  # the service appends this round's hash before calling on_round
        except (FederatedError, LocalError) as exc:
            raise StartRefused("config", str(exc)) from exc
        svc.open()  # subscribe to the model's topic now, before round 0 starts anywhere
        self.active = start.run_id
        self.counters["started"] += 1
        delay = min(max(0, start.start_ms - now), MAX_START_DELAY_MS) / 1000
        self._runs[start.run_id] = asyncio.ensure_future(self._run(start, svc, delay, sent))
        log.info("fl run started", extra={"run_id": start.run_id, "model": start.model, "rounds": start.rounds})

    async def _run(self, start: FLStart, svc: FederatedService, delay: float, sent: list[asyncio.Task[None]]) -> None:
        from federated import FederatedError

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
