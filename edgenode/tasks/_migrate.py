"""Moving a running task between executors: the messages, the ledger records, the receiving check.

When an executor stops (drain) while a task with safe points runs, it checkpoints the task,
records a ``task_checkpoint`` entry, and sends the snapshot (which carries the submitter's
sealed spec) to another executor on :data:`MIGRATE_PROTOCOL` (by name: the receiver fetches it
as a blob). That executor checks the
snapshot (signed by the peer that sent it) and the spec (signed by its submitter), records
a ``task_resumed`` entry, resumes the task, and answers with its own receipt. The first
executor answers the submitter's one request with a :class:`Handover` that wraps that
receipt; the submitter verifies the receipt against the executor the handover names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .. import wire
from ..errors import EdgenodeError
from ..protocol import InvalidReceipt, TaskSpec, VerifiedReceipt, verify_receipt

__all__ = [
    "MIGRATE_PROTOCOL",
    "CHECKPOINT_KIND",
    "RESUMED_KIND",
    "Handover",
    "CheckpointRecord",
    "ResumedRecord",
    "verify_handover",
]

MIGRATE_PROTOCOL = "/edgenode/migrate/1"
"""Direct stream: request a snapshot's id (sha256 hex; the receiver fetches the snapshot, signed by the
sender, from the sender as a blob), answer a sealed receipt, Busy or Rejected."""
CHECKPOINT_KIND = "task_checkpoint"
"""Ledger entry kind: this executor checkpointed a task and handed it on (body: :class:`CheckpointRecord`)."""
RESUMED_KIND = "task_resumed"
"""Ledger entry kind: this executor resumed a task from a snapshot (body: :class:`ResumedRecord`); its
``task_result`` entry follows."""


@wire.message("task.handover", 1)
@dataclass(frozen=True)
class Handover:
    """The first executor's answer to the submitter: the task moved and finished on ``executor``."""

    task_id: str
    executor: str
    """Peer id of the executor that finished the task (it signed ``receipt``)."""
    receipt: bytes
    """That executor's sealed receipt."""
    snapshot: str
    """Id (sha256 hex) of the snapshot it resumed."""


@wire.message("task.checkpoint", 1)
@dataclass(frozen=True)
class CheckpointRecord:
    """Body of a ``task_checkpoint`` entry."""

    task_id: str
    spec_hash: str
    snapshot: str
    """sha256 hex of the snapshot's bytes."""
    fuel_used: int
    """Fuel the task used up to the checkpoint."""
    to: str
    """Peer id the snapshot was handed to."""


@wire.message("task.resumed", 1)
@dataclass(frozen=True)
class ResumedRecord:
    """Body of a ``task_resumed`` entry."""

    task_id: str
    spec_hash: str
    snapshot: str
    """sha256 hex of the snapshot resumed."""
    fuel_used: int
    """Fuel the task had used before it resumed here."""
    sender: str
    """Peer id of the executor that took the snapshot."""


def verify_handover(
    msg: Handover,
    asked: str,
    spec: TaskSpec,
    sealed_spec_body: bytes,
    decrypt: Callable[[bytes], bytes] | None = None,
) -> VerifiedReceipt:
    """The receipt a handover from ``asked`` carries, verified against the executor it names.

    Raises :class:`InvalidReceipt` when the handover names ``asked`` itself or another task,
    or its receipt does not verify.
    """
    if msg.executor == asked or msg.task_id != spec.task_id:
        raise InvalidReceipt("invalid receipt: a handover must name another executor and this task")
    try:
        return verify_receipt(msg.receipt, msg.executor, spec, sealed_spec_body, decrypt)
    except EdgenodeError as exc:
        raise InvalidReceipt(f"invalid receipt in a handover: {exc}") from exc
