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

import asyncio
import logging
import platform
from collections.abc import Callable
from dataclasses import dataclass

from .. import wire
from ..errors import EdgenodeError
from ..identity import public_key_from_peer_id
from ..net import MemoryBlobStore, Transport
from ..protocol import InvalidReceipt, TaskSpec, VerifiedReceipt, verify_receipt
from ..sandbox import Snapshot, open_snapshot

__all__ = [
    "MIGRATE_PROTOCOL",
    "MOVE_PROTOCOL",
    "MoveOrder",
    "MoveDone",
    "DrainOrder",
    "DrainDone",
    "ORDER_SKEW_MS",
    "arch_capability",
    "SNAPSHOT_PROTOCOL",
    "POLICY_CHECKPOINT_MS",
    "MIN_CHECKPOINT_MS",
    "SnapshotNote",
    "SnapshotKeeper",
    "checkpoint_ms",
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
MOVE_PROTOCOL = "/edgenode/move/1"
"""Direct stream, operator -> node: an order sealed with the node's own key: a :class:`MoveOrder`, answered
with a sealed :class:`MoveDone` once the task has moved (or why not), or a :class:`DrainOrder`, answered
with a sealed :class:`DrainDone` at once."""
ORDER_SKEW_MS = 60_000
"""A node refuses an order issued further than this from its clock."""
SNAPSHOT_PROTOCOL = "/edgenode/snapshot/1"
"""Direct stream, executor -> submitter: a sealed :class:`SnapshotNote`; the submitter fetches the
snapshot from the executor as a blob before it answers (``ok``, or why not)."""
POLICY_CHECKPOINT_MS = "checkpoint_ms"
"""Spec policy key: take a snapshot every this many milliseconds and ship it to the submitter."""
MIN_CHECKPOINT_MS = 100
"""Shortest checkpoint interval an executor honours (a shorter one is raised to it)."""
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


@wire.message("task.snapshot_note", 1)
@dataclass(frozen=True)
class SnapshotNote:
    """An executor tells the submitter it has a new snapshot of its task (fetch it by name)."""

    task_id: str
    snapshot: str
    """sha256 hex of the snapshot's bytes."""


def checkpoint_ms(spec: TaskSpec) -> int:
    """The checkpoint interval a spec asks for (0: none), at least :data:`MIN_CHECKPOINT_MS`."""
    raw = spec.policy.get(POLICY_CHECKPOINT_MS, "")
    if not raw.isdigit() or len(raw) > 9 or int(raw) == 0:
        return 0
    return max(MIN_CHECKPOINT_MS, int(raw))


log = logging.getLogger("edgenode.submitter")


class SnapshotKeeper:
    """The submitter's side of periodic checkpoints: the latest verified snapshot of each task it waits for.

    :meth:`expect` names the executor a task was sent to and the sealed spec; :meth:`handle`
    (the :data:`SNAPSHOT_PROTOCOL` handler) takes a note only from that executor, fetches the
    snapshot from it, checks its signature (that executor) and its spec (the one sent), and
    keeps it, served as a blob so that the next executor can fetch it. :meth:`forget` drops a
    finished task's. At most ``max_tasks`` tasks are tracked.
    """

    def __init__(self, transport: Transport, blobs: MemoryBlobStore, max_tasks: int = 256) -> None:
        self.transport = transport
        self.blobs = blobs
        self.max_tasks = max_tasks
        self._expect: dict[str, tuple[str, bytes, int]] = {}  # task -> (executor, sealed spec, max pages)
        self._latest: dict[str, Snapshot] = {}
        self._busy: set[str] = set()
        self.received = 0

    def expect(self, task_id: str, executor: str, sealed_spec: bytes, memory_mb: int) -> None:
        """Snapshots of ``task_id`` may now come from ``executor`` (only), for ``sealed_spec``."""
        if task_id not in self._expect and len(self._expect) >= self.max_tasks:
            return
        self._expect[task_id] = (executor, sealed_spec, memory_mb << 4)

    def latest(self, task_id: str) -> Snapshot | None:
        """The latest snapshot kept for ``task_id``."""
        return self._latest.get(task_id)

    def forget(self, task_id: str) -> None:
        """The task is over: drop what is kept for it."""
        self._expect.pop(task_id, None)
        snap = self._latest.pop(task_id, None)
        if snap is not None:
            self.blobs.discard(snap.id)

    async def handle(self, sender: str, data: bytes) -> bytes:
        """The :data:`SNAPSHOT_PROTOCOL` handler."""
        try:
            env, note = wire.open_as(SnapshotNote, data)
        except EdgenodeError:
            return b"malformed"
        expected = self._expect.get(note.task_id)
        if env.author_id != sender or expected is None or expected[0] != sender:
            return b"unexpected"
        if note.task_id in self._busy:
            return b"busy"
        self._busy.add(note.task_id)
        try:
            blob = await self.transport.fetch_blob(sender, note.snapshot, timeout=60.0)
            snap = await asyncio.to_thread(open_snapshot, blob, max_pages=expected[2],
                                           trusted={public_key_from_peer_id(sender)})
        except EdgenodeError as exc:
            log.info("snapshot not kept", extra={"task_id": note.task_id, "error": str(exc)})
            return b"refused"
        finally:
            self._busy.discard(note.task_id)
        if snap.state.spec != expected[1] or self._expect.get(note.task_id) != expected:
            return b"refused"
        old = self._latest.get(note.task_id)
        if old is not None and old.state.fuel_used >= snap.state.fuel_used:
            return b"stale"
        self.blobs.put(snap.data)
        self._latest[note.task_id] = snap
        if old is not None:
            self.blobs.discard(old.id)
        self.received += 1
        return b"ok"

    def resume_request(self, snap: Snapshot) -> tuple[wire.Envelope, TaskSpec, bytes]:
        """(spec envelope, spec, the :data:`MIGRATE_PROTOCOL` request) to resume ``snap`` elsewhere."""
        env, spec = wire.open_as(TaskSpec, snap.state.spec)
        return env, spec, snap.id.encode("ascii")


_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "armv8": "aarch64"}


def arch_capability(machine: str | None = None) -> str:
    """The capability an executor advertises for its CPU: ``arch:x86_64``, ``arch:aarch64``..."""
    m = (machine or platform.machine()).lower()
    return f"arch:{_ARCH_ALIASES.get(m, m)}"


@wire.message("task.move_order", 1)
@dataclass(frozen=True)
class MoveOrder:
    """Move a running task elsewhere (``edgenode migrate``): valid only sealed with the node's own key."""

    task_id: str
    to: tuple[str, ...]
    """Executors to offer it to, in order (empty: placement chooses)."""
    requires: tuple[str, ...]
    """Capabilities the new executor must advertise, e.g. ``arch:aarch64``."""
    issued_ms: int
    """Unix ms; a node refuses an order more than a minute off its clock."""


@wire.message("task.move_done", 1)
@dataclass(frozen=True)
class MoveDone:
    """A node's answer to a :class:`MoveOrder`."""

    task_id: str
    moved: bool
    executor: str
    """The executor that finished the task (empty when it did not move)."""
    detail: str


@wire.message("node.drain_order", 1)
@dataclass(frozen=True)
class DrainOrder:
    """Drain the node (``edgenode drain``): valid only sealed with the node's own key."""

    issued_ms: int
    """Unix ms; a node refuses an order more than a minute off its clock."""


@wire.message("node.drain_done", 1)
@dataclass(frozen=True)
class DrainDone:
    """A node's answer to a :class:`DrainOrder`, sent before it starts to stop."""

    draining: bool
    """The node stopped admitting and will stop (False: the order was refused, or it drains already)."""
    moving: tuple[str, ...]
    """Ids of the running tasks with safe points asked to move to other executors."""
    reason: str
    """Why not draining: ``forbidden`` (not sealed with the node's key, or stale), ``stopping`` (it
    drains or stops already); empty when draining."""
    detail: str
