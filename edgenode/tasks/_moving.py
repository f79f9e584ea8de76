"""The executor's part in moving tasks: runs that can be checkpointed, periodic snapshots, hand-overs.

:class:`MovingTasks` is a mixin of :class:`~edgenode.tasks.Executor` (one concern per module):
it runs tasks whose module has safe points through ``prepare``/``start`` so that they can be
checkpointed (drain, an ordered :meth:`~MovingTasks.move`, ``checkpoint_ms`` in the spec),
ships periodic snapshots to the submitter, hands a checkpointed task to another executor, and
resumes a task another executor (or its submitter) hands here (:meth:`~MovingTasks.handle_migrate`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from .. import wire
from ..errors import EdgenodeError, LocalError
from ..identity import public_key_from_peer_id
from ..net import Transport
from ..protocol import KIND_WASM, Rejected, TaskSpec, spec_hash
from ..reasons import Reason
from ..sandbox import Checkpointing, Limits, PreparedRun, RunResult, Snapshot, TaskIO, is_module_hash
from ..wire import Signer
from ._chain import ChainWriter
from ._migrate import CHECKPOINT_KIND, CheckpointRecord, Handover, checkpoint_ms

__all__ = ["MovingTasks", "blocking"]

log = logging.getLogger("edgenode.executor")
_T = TypeVar("_T")


class MovingTasks:
    """Mixin: the moving-task half of the executor (its state is set up by ``Executor.__init__``)."""

    signer: Signer
    transport: Transport
    chain: ChainWriter
    wasm: Any
    counts: Counter[str]
    closing: bool
    migrate: Callable[[Snapshot, Sequence[str], Sequence[str]], Awaitable[tuple[str, bytes]]] | None
    ship: Callable[[str, str, Snapshot], Awaitable[None]] | None
    _runs: dict[tuple[bytes, str], PreparedRun]
    _moves: dict[str, tuple[Sequence[str], Sequence[str], asyncio.Future[str]]]
    _shipping: dict[str, asyncio.Task[None]]

    def _seal(self, msg: object) -> bytes:
        raise NotImplementedError

    def _cache_receipt(self, key: tuple[bytes, str], sealed: bytes) -> None:
        raise NotImplementedError

    def _refused(self, why: str) -> None:
        raise NotImplementedError

    async def handle(self, sender: str, data: bytes, *, resume: Snapshot | None = None) -> bytes:
        raise NotImplementedError

    async def _run_movable(
        self,
        wasm: Any,
        spec: TaskSpec,
        io: TaskIO,
        limits: Limits,
        env: wire.Envelope,
        resume: Snapshot | None,
        sender: str,
    ) -> RunResult:
        """Run a task with safe points that drain() may checkpoint and that may ship periodic
        snapshots to its submitter (``checkpoint_ms`` in its spec), or resume one."""
        key = (env.author, spec.task_id)
        sealed_spec = wire.encode([wire.ENVELOPE_VERSION, env.author, env.body, env.signature])
        every = checkpoint_ms(spec) if self.ship is not None else 0
        on_snapshot = self._shipper(sender, spec, spec_hash(env.body)) if every else None
        policy = None
        if self.migrate is not None or every:
            policy = Checkpointing(self.signer, every_ms=every, on_snapshot=on_snapshot, spec=sealed_spec, deltas=False)
        prepare = functools.partial(wasm.prepare, checkpointing=policy, resume=() if resume is None else (resume,))
        run: PreparedRun = await blocking(wasm, prepare, spec.module, io, limits)
        if run.checkpointable:
            self._runs[key] = run
            if self.closing:
                run.request_checkpoint(stop=True)
        result: RunResult | None = None
        try:
            result = await blocking(wasm, run.start)
            return result
        finally:
            self._runs.pop(key, None)
            if result is None or result.snapshot is None or str(result.status) != "checkpointed":
                _to, _requires, done = self._moves.pop(spec.task_id, ((), (), None))
                if done is not None and not done.done():
                    done.set_exception(LocalError("the task ended before it reached a safe point"))

    def _shipper(self, peer: str, spec: TaskSpec, s_hash: str) -> Callable[[Snapshot], None]:
        """An ``on_snapshot`` callback (the task's thread) that ships each snapshot to ``peer`` from the loop.

        One shipment per task at a time: a snapshot taken while the last one travels is skipped.
        """
        loop = asyncio.get_running_loop()

        def ship_soon(snap: Snapshot) -> None:
            shipping = self._shipping.get(spec.task_id)
            if self.ship is None or self.closing or (shipping is not None and not shipping.done()):
                return
            self._shipping[spec.task_id] = asyncio.ensure_future(self._ship(peer, spec, s_hash, snap))

        def on_snapshot(snap: Snapshot) -> None:
            loop.call_soon_threadsafe(ship_soon, snap)

        return on_snapshot

    async def _ship(self, peer: str, spec: TaskSpec, s_hash: str, snap: Snapshot) -> None:
        assert self.ship is not None
        try:  # recorded first: an entry names each snapshot that may be resumed
            record = CheckpointRecord(spec.task_id, s_hash, snap.id, snap.state.fuel_used, peer)
            await self.chain.append(CHECKPOINT_KIND, wire.to_bytes(record))
            await self.ship(peer, spec.task_id, snap)
            self.counts["snapshots_shipped"] += 1
        except EdgenodeError as exc:
            self.counts["snapshots_not_shipped"] += 1
            log.info("snapshot not shipped", extra={"task_id": spec.task_id, "error": str(exc)})
        finally:
            if self._shipping.get(spec.task_id) is asyncio.current_task():
                self._shipping.pop(spec.task_id, None)

    async def _hand_over(self, env: wire.Envelope, spec: TaskSpec, s_hash: str, snap: Snapshot) -> bytes | None:
        """Send a checkpointed task to another executor; answer the submitter with its receipt, in a
        handover (``None`` when no executor took it)."""
        to, requires, done = self._moves.pop(spec.task_id, ((), (), None))
        if self.migrate is None:
            return None
        try:
            peer, answer = await self.migrate(snap, to, requires)
        except EdgenodeError as exc:
            log.warning("task not migrated", extra={"task_id": spec.task_id, "error": str(exc)})
            self.counts["migrate_failed"] += 1
            if done is not None and not done.done():
                done.set_exception(exc)
            return None
        if done is not None and not done.done():
            done.set_result(peer)
        record = CheckpointRecord(spec.task_id, s_hash, snap.id, snap.state.fuel_used, peer)
        try:
            await self.chain.append(CHECKPOINT_KIND, wire.to_bytes(record))
        except EdgenodeError as exc:  # the task moved; only the record of the hop is missing
            log.warning("task checkpoint not recorded", extra={"task_id": spec.task_id, "error": str(exc)})
        self.counts["migrated"] += 1
        sealed = self._seal(Handover(spec.task_id, peer, answer, snap.id))
        self._cache_receipt((env.author, spec.task_id), sealed)
        return sealed

    async def handle_migrate(self, sender: str, data: bytes) -> bytes:
        """The :data:`~edgenode.tasks.MIGRATE_PROTOCOL` handler: resume a task ``sender`` checkpointed.

        The request names the snapshot (its sha256); it is fetched from ``sender`` as a blob. It
        must carry a spec signed by its submitter, and be signed by ``sender`` (an executor
        handing its task on) or come from the submitter itself (resuming after its executor
        died); the task is then admitted as if its submitter had sent it here, and resumed.
        """
        opener = getattr(self.wasm, "open_snapshot", None)
        if opener is None:
            return self._seal(Rejected("", Reason.UNSUPPORTED_KIND, "this node does not resume tasks"))
        digest = data.decode("ascii", "replace")
        if not is_module_hash(digest):  # a snapshot's name has the shape of a module's: sha256 hex
            self._refused("invalid")
            return self._seal(Rejected("", Reason.MALFORMED, "not a snapshot id"))
        try:
            blob = await self.transport.fetch_blob(sender, digest, timeout=60.0)  # checked against its name
            snap: Snapshot = await asyncio.to_thread(opener, blob)
            env, spec = wire.open_as(TaskSpec, snap.state.spec)
            sender_key = public_key_from_peer_id(sender)
        except EdgenodeError as exc:
            self._refused("invalid")
            return self._seal(Rejected("", Reason.MALFORMED, f"invalid snapshot: {exc}"))
        if sender_key not in (snap.author, env.author):  # its executor hands it on, or its submitter does
            self._refused("forbidden")
            why = "a snapshot from neither its taker nor the task's submitter"
            return self._seal(Rejected(spec.task_id, Reason.FORBIDDEN, why))
        if spec.kind != KIND_WASM or spec.module != snap.state.module_hash:
            self._refused("invalid")
            return self._seal(Rejected(spec.task_id, Reason.MALFORMED, "the snapshot is not of the spec's module"))
        self.counts["resumed"] += 1
        return await self.handle(env.author_id, snap.state.spec, resume=snap)

    def move(self, task_id: str, to: Sequence[str] = (), requires: Sequence[str] = ()) -> asyncio.Future[str] | None:
        """Move a running task with safe points to another executor (``to`` in order, else placement
        among those advertising ``requires``); ``None`` when no such task runs here.

        The future gives the peer that took it, or the ``EdgenodeError`` why none did (the task
        then goes on here, from its snapshot).
        """
        run = next((r for (_author, tid), r in self._runs.items() if tid == task_id), None)
        if run is None or self.migrate is None or task_id in self._moves:
            return None
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._moves[task_id] = (tuple(to), tuple(requires), done)
        run.request_checkpoint(stop=True)
        return done

    def migratable_running(self) -> int:
        """Running tasks that drain() would checkpoint and move."""
        return len(self._runs)

    def checkpoint_all(self) -> list[str]:
        """Ask every running task with safe points to stop at its next safe point and move to another
        executor (placement chooses); their task ids. What a drain does first."""
        for run in self._runs.values():
            run.request_checkpoint(stop=True)
        return [task_id for _author, task_id in self._runs]


async def blocking(engine: object, fn: Callable[..., _T], *args: Any) -> _T:
    """Call an engine's blocking ``fn`` in a worker thread, or inline for an engine that says
    ``in_loop = True`` (a fake that never blocks: what a node on a virtual-time loop needs,
    since a thread's result would be overtaken by the jumping clock)."""
    if getattr(engine, "in_loop", False):
        return fn(*args)
    return await asyncio.to_thread(fn, *args)
