"""What both swarm backends share, with no network of their own.

:class:`_SwarmBase` holds the scenario, the fault schedule, the executors' ids and
the submitters (real :class:`edgenode.tasks.Submitter` objects), and submits the
workload through them.  :class:`simnet._swarm.MemSwarm` adds memnet and in-process
nodes; :class:`simnet._p2p.P2PSwarm` adds real libp2p nodes in groups (worker processes or Ray actors).
"""

from __future__ import annotations

import abc
import hashlib
import random
from collections.abc import Callable
from pathlib import Path

from edgenode.errors import EdgenodeError
from edgenode.identity import Identity
from edgenode.protocol import InvalidReceipt, NoExecutor, NoMajority, SpecExpired, TaskLimits, TaskTimeout
from edgenode.tasks import Submitter
from edgenode.tasks import TaskRequest as NodeTaskRequest

from ._backend import SwarmBackend, TaskOutcome, TaskRequest
from ._engines import expected_output, task_shape
from ._faults import FaultSchedule
from ._migrate import migrate_limits
from ._scenario import Scenario
from ._wrap import CURRENT_TASK, RecordingTransport

__all__ = ["PROBE_TOPIC", "assign_profiles"]

PROBE_TOPIC = "simnet/probe/1"
"""Gossip topic of the delivery probes."""


def assign_profiles(scenario: Scenario) -> list[str]:
    """Each executor's profile name: shares by largest remainder, shuffled with the seed."""
    n = scenario.swarm.nodes
    names = sorted(scenario.profiles)
    total = sum(scenario.profiles[p].share for p in names)
    exact = [scenario.profiles[p].share / total * n for p in names]
    counts = [int(x) for x in exact]
    for i in sorted(range(len(names)), key=lambda i: exact[i] - counts[i], reverse=True)[: n - sum(counts)]:
        counts[i] += 1
    out = [p for p, c in zip(names, counts, strict=True) for _ in range(c)]
    random.Random(scenario.swarm.seed ^ 0x9F0F11E).shuffle(out)
    return out


def _identity(seed: int, role: str, i: int) -> Identity:
    return Identity(hashlib.sha256(f"simnet:{seed}:{role}:{i}".encode()).digest())


class _SwarmBase(SwarmBackend):
    """The scenario, the executors' ids and the submitters; the workload goes through the submitters."""

    def __init__(self, scenario: Scenario, workdir: Path | None = None) -> None:
        self.sc = scenario
        self.notes: list[str] = []
        self._workdir = workdir
        sw = scenario.swarm
        self.schedule = FaultSchedule(scenario.faults, sw.nodes, sw.seed, sw.duration_s)
        self.profiles = assign_profiles(scenario)
        self.ids: list[str] = []
        self.submitters: list[Submitter] = []
        self.recorders: list[RecordingTransport] = []
        self.faulted: set[int] = set()
        self._on_probe: Callable[[str, str], None] | None = None
        self.migrate_results: dict[str, tuple[int, int, str]] = {}
        """``migrate`` tasks with a verified ``ok`` result: task id -> (payload, rounds, sha256 of the output)."""

    @property
    def node_ids(self) -> list[str]:
        return list(self.ids)

    @abc.abstractmethod
    def _is_forger(self, peer: str) -> bool:
        """Whether ``peer`` is an executor forging receipts."""

    async def submit(self, req: TaskRequest) -> TaskOutcome:
        mix = req.mix
        shape = task_shape(mix.task, req.payload, mix.rounds)
        sub = self.submitters[req.submitter % len(self.submitters)]
        rt = self.recorders[req.submitter % len(self.recorders)]
        migrate = mix.task == "migrate"
        nreq = NodeTaskRequest(
            kind=shape.kind,
            module=shape.module_hash,
            input=shape.input,
            limits=(migrate_limits(mix.rounds, mix.deadline_ms) if migrate
                    else TaskLimits(fuel=50_000_000, timeout_ms=min(5000, mix.deadline_ms))),
            deadline_ms=mix.deadline_ms * req.max_attempts,
            redundancy=req.redundancy,
            sla=mix.sla,
            attempt_ms=mix.deadline_ms,
            checkpoint_ms=mix.checkpoint_ms if migrate else 0,
        )
        token = CURRENT_TASK.set(req.task_id)
        try:
            out = await sub.submit(nreq)
        except NoExecutor:
            return self._failed(rt, req, "rejected")
        except TaskTimeout:
            return self._failed(rt, req, "timeout")
        except InvalidReceipt:
            return self._failed(rt, req, "invalid_receipt")
        except NoMajority:
            return self._failed(rt, req, "no_majority")
        except SpecExpired:
            return self._failed(rt, req, "expired")
        except EdgenodeError:
            return self._failed(rt, req, "failed")
        finally:
            CURRENT_TASK.reset(token)
        status = out.status
        want = expected_output(req.mix.task, req.payload)
        if want is not None and out.output != want:
            status = "wrong_output"
        forged = sum(1 for p in rt.receipts_from.get(req.task_id, []) if self._is_forger(p))
        if migrate and status == "ok":
            self.migrate_results[req.task_id] = (req.payload, mix.rounds, hashlib.sha256(out.output).hexdigest())
        return TaskOutcome(
            verified=True,
            status=status,
            executor=out.executor,
            accepted=True,
            attempts=out.attempts,
            output_hash=hashlib.sha256(out.output).hexdigest(),
            rejected_receipts=forged,
        )

    def _failed(self, rt: RecordingTransport, req: TaskRequest, why: str) -> TaskOutcome:
        forged = sum(1 for p in rt.receipts_from.get(req.task_id, []) if self._is_forger(p))
        honest_receipt = any(not self._is_forger(p) for p in rt.receipts_from.get(req.task_id, []))
        return TaskOutcome(verified=False, status=why, accepted=honest_receipt, attempts=1, rejected_receipts=forged)
