"""The workload as a sans-IO schedule: seeded Poisson arrivals of tasks from the mix."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ._scenario import TaskMix, Workload

__all__ = ["Arrival", "arrivals"]


@dataclass(frozen=True)
class Arrival:
    """One task to submit at ``at_s``."""

    at_s: float
    task_id: str
    """Unique within the run."""
    submitter: int
    """Index of the submitting light peer."""
    mix: TaskMix
    payload: int
    """A seeded number the driver turns into the task's input (so outputs differ per task)."""


def arrivals(workload: Workload, duration_s: float, seed: int) -> list[Arrival]:
    """Every arrival in ``[start_s, duration_s)``: exponential gaps at ``rate_per_s``, mix by weight."""
    rng = random.Random(seed ^ 0xA771_7E5)
    out: list[Arrival] = []
    if workload.rate_per_s <= 0:
        return out
    weights = [m.weight for m in workload.mix]
    t = workload.start_s
    n = 0
    while True:
        t += rng.expovariate(workload.rate_per_s)
        if t >= duration_s:
            return out
        mix = rng.choices(workload.mix, weights=weights)[0]
        out.append(
            Arrival(
                at_s=t,
                task_id=f"{seed:x}-{n:06d}",
                submitter=n % workload.submitters,
                mix=mix,
                payload=rng.getrandbits(32),
            )
        )
        n += 1
