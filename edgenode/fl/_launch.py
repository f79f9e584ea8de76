"""The launcher's side of a federated run on a swarm: send the start, gather progress.

:class:`ProgressBook` (sans-IO) turns the nodes' :class:`~edgenode.fl.FLProgress`
reports into one :class:`RoundSummary` per round (mean/median accuracy across nodes);
:func:`launch` is the asyncio adapter over a started :class:`~edgenode.net.Transport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from .. import wire
from ..clock import Clock, SystemClock
from ..errors import RemoteError
from ..net import GossipMessage, NetError, Transport
from ._messages import FL_CONTROL_PROTOCOL, FL_CONTROL_TOPIC, FL_PROGRESS_TOPIC, FLAck, FLProgress, FLStart

__all__ = [
    "RoundSummary",
    "ProgressBook",
    "NoFLNode",
    "FLStalled",
    "make_start",
    "launch",
]


class NoFLNode(RemoteError):
    """No node accepted the start command in time (none reachable with FL enabled)."""


class FLStalled(RemoteError):
    """The run started but progress stopped arriving before the last round."""


@dataclass(frozen=True)
class RoundSummary:
    """One round as the swarm reported it."""

    round: int
    """Round number, from 0."""
    rounds: int
    """Rounds in the run."""
    nodes: int
    """Nodes that reported this round."""
    accuracy_mean: float
    accuracy_median: float
    accuracy_min: float
    loss_mean: float
    updates_mean: float
    """Updates aggregated per node (own included), averaged over reporting nodes."""
    model_sha256: str
    """The model hash most nodes reported (empty when nodes have no registry)."""
    models: int
    """Distinct model hashes reported (1 when every node converged on the same model)."""

    def as_json(self) -> dict[str, object]:
        return {
            "round": self.round, "rounds": self.rounds, "nodes": self.nodes,
            "accuracy": self.accuracy_mean, "accuracy_median": self.accuracy_median,
            "accuracy_min": self.accuracy_min, "loss": self.loss_mean, "updates": self.updates_mean,
            "model_sha256": self.model_sha256, "models": self.models,
        }


class ProgressBook:
    """Reports by round; a round is due once ``expected`` nodes reported or ``grace`` seconds passed.

    ``expected`` grows with every new reporting node, and drops to the nodes heard so far when
    a round is released by grace (nodes that never report stop delaying later rounds).

    Rounds are released in order; a round nobody reported is skipped once a later one is due.
    """

    def __init__(self, run_id: str, rounds: int, expected: int = 1, grace: float = 2.0) -> None:
        self.run_id = run_id
        self.rounds = rounds
        self.expected = max(1, expected)
        self.grace = grace
        self._reports: dict[int, dict[str, FLProgress]] = {}
        self._first: dict[int, float] = {}
        self._next = 0
        self.authors: set[str] = set()
        """Every node that reported at least once."""
        self.last_report_at: float | None = None
        self.dropped = 0
        """Reports of another run, a bad round number, or a repeat."""

    @property
    def done(self) -> bool:
        """Every round has been released."""
        return self._next >= self.rounds

    def add(self, author_id: str, report: FLProgress, now: float) -> None:
        """Record one verified report (``author_id`` is its envelope's signer)."""
        if (report.run_id != self.run_id or report.peer_id != author_id or not self._next <= report.round < self.rounds
                or author_id in self._reports.get(report.round, {})):
            self.dropped += 1
            return
        self._reports.setdefault(report.round, {})[author_id] = report
        self._first.setdefault(report.round, now)
        self.authors.add(author_id)
        self.last_report_at = now
        self.expected = max(self.expected, len(self.authors))

    def next_deadline(self) -> float | None:
        """When the earliest pending round is due by its grace period."""
        pending = [t for r, t in self._first.items() if r >= self._next]
        return min(pending) + self.grace if pending else None

    def due(self, now: float) -> list[RoundSummary]:
        """Release the rounds that are ready, in order."""
        out: list[RoundSummary] = []
        while not self.done:
            ready = [r for r in sorted(self._reports) if r >= self._next and self._ready(r, now)]
            if not ready:
                break
            r = ready[0]
            if len(self._reports[r]) < self.expected:  # released by grace: expect those who report
                self.expected = max(1, len(self.authors))
            out.append(self._summary(r))
            self._next = r + 1
        return out

    def _ready(self, r: int, now: float) -> bool:
        return len(self._reports[r]) >= self.expected or now >= self._first[r] + self.grace

    def _summary(self, r: int) -> RoundSummary:
        reps = list(self._reports.pop(r).values())
        self._first.pop(r, None)
        acc = [p.accuracy for p in reps]
        hashes = Counter(p.model_sha256 for p in reps)
        return RoundSummary(
            round=r, rounds=self.rounds, nodes=len(reps), accuracy_mean=statistics.fmean(acc),
            accuracy_median=statistics.median(acc), accuracy_min=min(acc),
            loss_mean=statistics.fmean(p.loss for p in reps), updates_mean=statistics.fmean(p.updates for p in reps),
            model_sha256=hashes.most_common(1)[0][0], models=len(hashes),
        )


def make_start(
    *, model: str, rounds: int, strategy: str, quorum: int, round_timeout_s: float, malicious: int = 1,
    now_ms: int, ttl_ms: int = 5 * 60_000, start_delay_ms: int = 2_000, run_id: str | None = None,
) -> FLStart:
    """A start command with a fresh run id, valid ``ttl_ms``, round 0 at ``now + start_delay_ms``."""
    return FLStart(
        run_id=run_id or os.urandom(8).hex(), model=model, rounds=rounds, strategy=strategy, quorum=quorum,
        round_timeout_s=round_timeout_s, malicious=malicious, issued_ms=now_ms, expires_ms=now_ms + ttl_ms,
        start_ms=now_ms + start_delay_ms,
    )


async def _pump(sub: AsyncIterator[GossipMessage], q: asyncio.Queue[GossipMessage]) -> None:
    async for msg in sub:
        q.put_nowait(msg)


async def _ask(transport: Transport, peer: str, sealed: bytes, timeout: float) -> FLAck | str:
    try:
        reply = await transport.request(peer, FL_CONTROL_PROTOCOL, sealed, timeout=timeout)
        env, ack = wire.open_as(FLAck, reply)
    except (NetError, RemoteError) as exc:
        return f"{peer}: {exc}"
    if env.author_id != ack.peer_id or ack.peer_id != peer:
        return f"{peer}: ack signed by another peer"
    return ack


async def launch(
    transport: Transport,
    signer: wire.Signer,
    start: FLStart,
    *,
    peers: Sequence[str],
    expected: int = 1,
    on_round: Callable[[RoundSummary], None] | None = None,
    ack_timeout: float = 15.0,
    stall_timeout: float | None = None,
    clock: Clock | None = None,
) -> list[RoundSummary]:
    """Send ``start`` to ``peers`` (and gossip it), then gather progress until the last round.

    Raises :class:`NoFLNode` when no peer accepts and no report arrives within ``ack_timeout``,
    :class:`FLStalled` when reports stop for ``stall_timeout`` seconds (default: 3 round
    timeouts + 30 s) before the last round.
    """
    stall = stall_timeout if stall_timeout is not None else 3 * start.round_timeout_s + 30.0
    clk: Clock = clock or SystemClock()

    def seconds() -> float:
        return clk.monotonic_ms() / 1000.0

    book = ProgressBook(start.run_id, start.rounds, expected=expected)
    q: asyncio.Queue[GossipMessage] = asyncio.Queue()
    sub = transport.subscribe(FL_PROGRESS_TOPIC)
    pump = asyncio.ensure_future(_pump(sub, q))
    sealed = wire.seal(signer, start)
    summaries: list[RoundSummary] = []
    try:
        with contextlib.suppress(NetError):
            await transport.publish(FL_CONTROL_TOPIC, sealed)
        answers = await asyncio.gather(*(_ask(transport, p, sealed, ack_timeout) for p in peers))
        acks = [a for a in answers if isinstance(a, FLAck) and a.run_id == start.run_id]
        accepted = [a for a in acks if a.accepted]
        book.expected = max(book.expected, len(accepted))
        began = seconds()
        while not book.done:
            now = seconds()
            silent_since = book.last_report_at if book.last_report_at is not None else began
            if not accepted and book.last_report_at is None and now - began >= ack_timeout:
                why = "; ".join([f"{a.peer_id}: {a.reason}" for a in acks] + [a for a in answers if isinstance(a, str)])
                raise NoFLNode("no node accepted the FL run" + (f" ({why})" if why else ""))
            if now - silent_since >= stall:
                raise FLStalled(f"no progress for {stall:.0f} s after round {len(summaries)} of {start.rounds}")
            wake = [silent_since + stall, began + ack_timeout if not accepted else silent_since + stall]
            deadline = book.next_deadline()
            if deadline is not None:
                wake.append(deadline)
            timeout = max(0.01, min(wake) - now)
            with contextlib.suppress(TimeoutError):
                msg = await asyncio.wait_for(q.get(), timeout)
                try:
                    env, report = wire.open_as(FLProgress, msg.data)
                except RemoteError:
                    book.dropped += 1
                else:
                    book.add(env.author_id, report, seconds())
            for s in book.due(seconds()):
                summaries.append(s)
                if on_round is not None:
                    on_round(s)
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        with contextlib.suppress(NetError):
            await sub.aclose()
    return summaries
