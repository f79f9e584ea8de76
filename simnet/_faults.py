"""The fault schedule: a sans-IO list of actions at times.

:class:`FaultSchedule` expands the scenario's ``[[faults]]`` entries into
concrete actions (kill node 3 at 6.0 s, restart it at 11.0 s, ...) with the
targets drawn from the scenario's seed.  It never reads a clock: the driver
asks :meth:`FaultSchedule.due` with its own ``now`` and applies what comes back,
and :meth:`FaultSchedule.next_at` says when to ask again.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ._scenario import Fault

__all__ = ["FaultAction", "FaultSpan", "FaultSchedule", "ACTIONS"]

ACTIONS = ("kill", "restart", "partition", "heal", "degrade", "restore", "byzantine")
"""Every action the driver must know how to apply."""

_END = {"kill": "restart", "partition": "heal", "degrade": "restore"}


@dataclass(frozen=True)
class FaultAction:
    """One thing for the driver to do at ``at_s``."""

    at_s: float
    """Seconds after the start."""
    action: str
    """One of :data:`ACTIONS`."""
    nodes: tuple[int, ...]
    """Indices of the nodes it applies to."""
    fault: int
    """Index of the ``[[faults]]`` entry it comes from."""
    latency_ms: float = 0.0
    """``degrade``: the degraded one-way latency."""
    loss: float = 0.0
    """``degrade``: the degraded loss probability."""
    behaviour: str = ""
    """``byzantine``: what the nodes do."""


@dataclass(frozen=True)
class FaultSpan:
    """A fault's extent on the timeline, for the report's plots."""

    kind: str
    start_s: float
    end_s: float
    """End of the fault (the run's end when it lasts to the end)."""
    nodes: tuple[int, ...]
    label: str


class FaultSchedule:
    """Concrete, time-ordered fault actions for a swarm of ``n_nodes`` executors."""

    def __init__(self, faults: Sequence[Fault], n_nodes: int, seed: int, end_s: float) -> None:
        if n_nodes < 1:
            raise ValueError("a schedule needs at least one node")
        rng = random.Random(seed ^ 0x5EED_FA17)
        actions: list[FaultAction] = []
        spans: list[FaultSpan] = []
        for i, f in enumerate(faults):
            targets = (
                tuple(sorted(f.nodes)) if f.nodes else tuple(sorted(rng.sample(range(n_nodes), min(f.count, n_nodes))))
            )
            start = FaultAction(
                at_s=f.at_s,
                action=f.kind,
                nodes=targets,
                fault=i,
                latency_ms=f.latency_ms if f.kind == "degrade" else 0.0,
                loss=f.loss if f.kind == "degrade" else 0.0,
                behaviour=f.behaviour if f.kind == "byzantine" else "",
            )
            actions.append(start)
            end = end_s
            if f.duration_s > 0 and f.kind in _END:
                end = f.at_s + f.duration_s
                actions.append(FaultAction(at_s=end, action=_END[f.kind], nodes=targets, fault=i))
            label = f.kind if f.kind != "byzantine" else f"byzantine:{f.behaviour}"
            spans.append(FaultSpan(kind=f.kind, start_s=f.at_s, end_s=max(end, f.at_s), nodes=targets, label=label))
        # stable order: by time, then in file order (an end before a later start at the same time)
        self._actions = sorted(actions, key=lambda a: a.at_s)
        self._next = 0
        self.spans: tuple[FaultSpan, ...] = tuple(spans)
        """Every fault's extent, in file order."""

    @property
    def actions(self) -> tuple[FaultAction, ...]:
        """All actions, time-ordered."""
        return tuple(self._actions)

    def next_at(self) -> float | None:
        """When the next action is due, or None when none is left."""
        if self._next >= len(self._actions):
            return None
        return self._actions[self._next].at_s

    def due(self, now: float) -> list[FaultAction]:
        """The actions due at or before ``now`` not returned before, in order."""
        out = []
        while self._next < len(self._actions) and self._actions[self._next].at_s <= now:
            out.append(self._actions[self._next])
            self._next += 1
        return out

    def wind_down(self, now: float) -> list[FaultAction]:
        """At the end of a run: the pending actions that end a fault already started by
        ``now`` (restart, heal, restore), so work can drain.  Faults not yet started are
        dropped, never begun: nothing is killed or cut off after the workload ends."""
        started = {a.fault for a in self._actions[: self._next]}
        out = [a for a in self._actions[self._next :] if a.action in _END.values() and a.fault in started]
        self._next = len(self._actions)
        return out

    def byzantine_nodes(self, behaviour: str | None = None) -> set[int]:
        """Nodes that turn byzantine at some point (optionally with one behaviour)."""
        return {
            n
            for a in self._actions
            if a.action == "byzantine" and (behaviour is None or a.behaviour == behaviour)
            for n in a.nodes
        }
