"""What the driver needs of a swarm: the one seam between simnet and the node code.

:class:`SwarmBackend` is implemented over the real node services in
:mod:`simnet._swarm` (memnet or libp2p).  The driver in :mod:`simnet._driver`
only speaks this interface, so adapting to changes in the node's API stays
local to the backend.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._faults import FaultAction
from ._scenario import FLSection, TaskMix

__all__ = ["SwarmBackend", "TaskRequest", "TaskOutcome", "LedgerState", "MovedWork", "SwarmState", "FLRound"]


@dataclass(frozen=True)
class TaskRequest:
    """One task the workload submits."""

    task_id: str
    mix: TaskMix
    payload: int
    """Seeded number the backend turns into the task's input."""
    submitter: int
    redundancy: int = 1
    max_attempts: int = 4


@dataclass(frozen=True)
class TaskOutcome:
    """What the submitter got back."""

    verified: bool
    """A receipt arrived and verified (signature, chain link, output hash)."""
    status: str
    """The task's status (``ok``...) when verified; else why the submitter gave up."""
    executor: str = ""
    accepted: bool = False
    """Some executor accepted the task (answered with a receipt or ran it)."""
    attempts: int = 0
    output_hash: str = ""
    rejected_receipts: int = 0
    """Receipts that failed verification (forged) and were thrown away."""


@dataclass(frozen=True)
class LedgerState:
    """One node's chain at the end of the run."""

    node: str
    height: int
    verified: bool
    detail: str = ""
    task_ids: tuple[str, ...] = ()
    """Task ids recorded by result entries (to find results recorded twice)."""
    byzantine: bool = False
    """The node misbehaved during the run (its records do not count as results)."""


@dataclass(frozen=True)
class MovedWork:
    """Tasks with safe points (``migrate``) whose executor was killed: work kept and work lost."""

    killed: tuple[tuple[str, int], ...] = ()
    """(task id, fuel the task had used, all hops together) for each run a kill ended."""
    resumed: tuple[tuple[str, int], ...] = ()
    """(task id, fuel of the snapshot it resumed from) for each run that resumed one."""
    checked: tuple[str, ...] = ()
    """Resumed tasks whose output was compared with an uninterrupted run's."""
    mismatched: tuple[str, ...] = ()
    """Those whose output differed (must be empty)."""


@dataclass(frozen=True)
class SwarmState:
    """What the backend reports at the end of the run."""

    ledgers: tuple[LedgerState, ...]
    fork_proofs: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    byzantine: dict[str, int] = field(default_factory=dict)
    """Byzantine attempts and their detection, by name."""
    moved: MovedWork = field(default_factory=MovedWork)
    """Kills of tasks with safe points and their resumes (memnet)."""


@dataclass(frozen=True)
class FLRound:
    """One FL round as the swarm saw it."""

    round: int
    accuracy: float
    """Mean test accuracy of the honest participants' models after aggregation."""
    loss: float
    updates: int
    """Mean updates aggregated per node."""
    dropped: int = 0
    """Updates dropped (bad signature or shape)."""


class SwarmBackend(abc.ABC):
    """A running swarm the driver can load, break and inspect."""

    notes: list[str]
    """What this backend could not do, said plainly; copied into the report."""
    placement: Sequence[dict[str, Any]] = ()
    """Where the nodes ran, one row per group of nodes (worker process or Ray actor: the Ray
    node, its address, the nodes, the group's peak RSS); copied into ``report.json``.  Empty when
    every node runs in this process (memnet).  Backends set their own list."""

    def progress_rows(self) -> list[str]:
        """Per-group progress lines for the live view (nodes up, tasks run, memory); none by default."""
        return []

    @abc.abstractmethod
    async def start(self) -> None:
        """Build and start every node and submitter; return once they see each other."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop everything (idempotent)."""

    @property
    @abc.abstractmethod
    def node_ids(self) -> list[str]:
        """Executor peer ids, by index."""

    @abc.abstractmethod
    async def submit(self, req: TaskRequest) -> TaskOutcome:
        """Submit one task and wait for its verified result or the submitter giving up."""

    @abc.abstractmethod
    async def apply(self, action: FaultAction) -> None:
        """Apply one fault action."""

    @abc.abstractmethod
    async def gossip_probe(self, msg_id: str, on_deliver: Callable[[str, str], None]) -> int:
        """Publish a probe from some live node; ``on_deliver(msg_id, node)`` runs on each delivery.

        Returns how many nodes should receive it.
        """

    @abc.abstractmethod
    async def run_fl(self, fl: FLSection, on_round: Callable[[FLRound], None]) -> float | None:
        """Run the FL rounds; return the centralized accuracy on the same data (None when not run)."""

    @abc.abstractmethod
    async def collect(self) -> SwarmState:
        """Ledgers (verified), fork proofs, drops by reason."""
