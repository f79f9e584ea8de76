"""Sans-IO placement: rank executors for a task from their adverts.

Two SLA classes.  ``latency`` orders by expected completion time (RTT plus
queueing behind the node's backlog), then cost.  ``cost`` keeps the
candidates that can still meet the deadline and orders them by cost class,
then expected time.  Candidates lacking a required capability, or with a
full queue, are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import LocalError
from ..protocol._messages import Advert
from ._adverts import RttTable

__all__ = ["SLA_LATENCY", "SLA_COST", "COST_RANK", "Candidate", "PlacementRequest", "expected_ms", "place"]

SLA_LATENCY = "latency"
SLA_COST = "cost"
COST_RANK = {"low": 0, "standard": 1, "premium": 2}
"""Order of the advertised cost classes, cheapest first (unknown classes rank last)."""


@dataclass(frozen=True)
class PlacementRequest:
    """What placement needs to know about a task."""

    requires: tuple[str, ...]
    """Capabilities every candidate must advertise."""
    deadline_ms: float
    """Time budget from now; candidates whose expected time exceeds it rank last (latency) or drop (cost)."""
    sla: str = SLA_LATENCY
    """``latency`` or ``cost``."""
    run_ms: float = 5.0
    """Expected run time of the task itself on an idle node."""


@dataclass(frozen=True)
class Candidate:
    peer: str
    expected_ms: float
    cost_rank: int
    load: float


def expected_ms(advert: Advert, rtt_ms: float, run_ms: float, pending: int = 0) -> float:
    """Round trip + own run + queueing behind the backlog (plus ``pending`` tasks we sent since
    the advert) spread over the node's slots."""
    busy = advert.slots - advert.free_slots + advert.queue_len + pending
    waves = busy / max(1, advert.slots)
    return rtt_ms + run_ms * (1.0 + waves)


def place(
    req: PlacementRequest,
    adverts: Iterable[Advert],
    rtt: RttTable,
    exclude: Sequence[str] = (),
    pending: Mapping[str, int] | None = None,
) -> list[Candidate]:
    """Candidates for ``req``, best first; empty when no node is capable.

    ``pending``: tasks this submitter has in flight per peer, which the peers' adverts
    do not show yet (so a burst spreads instead of piling onto the best-looking node).
    """
    pending = pending or {}
    if req.sla not in (SLA_LATENCY, SLA_COST):
        raise LocalError(f"unknown SLA class {req.sla!r} (want latency or cost)")
    skip = set(exclude)
    out: list[Candidate] = []
    for a in adverts:
        if a.peer_id in skip:
            continue
        caps = set(a.capabilities)
        if not all(r in caps for r in req.requires):
            continue
        if a.free_slots <= 0 and a.queue_len >= a.queue_cap:
            continue
        load = (a.slots - a.free_slots + a.queue_len) / max(1, a.slots + a.queue_cap)
        out.append(Candidate(a.peer_id, expected_ms(a, rtt.get(a.peer_id), req.run_ms, pending.get(a.peer_id, 0)),
                             COST_RANK.get(a.cost_class, len(COST_RANK)), load))
    if req.sla == SLA_COST:
        fits = [c for c in out if c.expected_ms <= req.deadline_ms]
        return sorted(fits, key=lambda c: (c.cost_rank, c.expected_ms, c.peer))
    return sorted(out, key=lambda c: (c.expected_ms > req.deadline_ms, c.expected_ms, c.cost_rank, c.peer))
