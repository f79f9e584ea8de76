"""The executor side of the task protocol: admit, fetch, run, record, answer with a receipt.

An adapter around the sans-IO cores (:class:`~edgenode.scheduler.Admission`,
:class:`~edgenode.scheduler.ReplayGuard`): the request handler registered on
:data:`~edgenode.protocol.TASK_PROTOCOL` calls :meth:`Executor.handle`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from ledger import MAX_BODY_BYTES

from .. import wire
from ..config import LedgerSection, TablesSection
from ..errors import EdgenodeError, SignatureError
from ..identity import Identity, peer_id_from_public_key
from ..net import Transport
from ..protocol import (
    KIND_INFER,
    KIND_WASM,
    PAYLOAD_KIND,
    RESULT_KIND,
    STATUS_OK,
    Busy,
    Receipt,
    Rejected,
    TaskPayload,
    TaskRecord,
    TaskSpec,
    spec_hash,
)
from ..reasons import Reason
from ..sandbox import InvalidModule, Limits, PreparedRun, Snapshot, TaskIO, is_module_hash
from ..scheduler import Admission, Refuse, ReplayGuard
from ..security import (
    POLICY_LEDGER_PAYLOAD,
    Grant,
    Refused,
    SwarmGuard,
    capability_request,
    decide,
    decrypt_from,
    encrypt_for,
    is_encrypted,
)
from ..wire import Signer
from ._chain import ChainWriter
from ._migrate import (
    RESUMED_KIND,
    ResumedRecord,
    arch_capability,
    checkpoint_ms,
)
from ._moving import MovingTasks
from ._moving import blocking as _blocking
from ._ports import AdmissionHook, Clock, InferEngine, WasmEngine
from ._replay import MemoryReplayStore, ReplayStore

__all__ = ["Executor", "RESULT_CACHE", "DrainReport"]

RESULT_CACHE = TablesSection.receipts
"""Receipts kept per (submitter, task id) by default: a repeated task is answered, not run (nor
recorded) twice.  ``[tables] receipts`` and ``receipt_bytes`` set the count and the byte budget."""
_FORGET_EVERY_MS = 10_000
"""How often expired replay entries are deleted from the replay store."""

log = logging.getLogger("edgenode.executor")

_RETRY_MS = 1000
_MAX_MOVING_WAIT_S = 300.0
"""Longest a stopping executor waits for the receipt of a task it handed to another executor."""


@dataclasses.dataclass(frozen=True)
class DrainReport:
    """What :meth:`Executor.drain` did with the tasks it found."""

    finished: int = 0
    """Tasks that ended on their own within the budget (receipt or refusal, as usual)."""
    unqueued: int = 0
    """Tasks still waiting for a slot: each answered ``Busy(stopping)``."""
    handed_back: int = 0
    """Running tasks past the budget: cancelled, each answered ``Busy(stopping)``."""


class Executor(MovingTasks):
    """Runs admitted tasks on ``slots`` workers and answers each with a signed receipt."""

    def __init__(
        self,
        signer: Signer,
        transport: Transport,
        chain: ChainWriter,
        clock: Clock,
        admission: Admission,
        wasm: WasmEngine | None = None,
        infer: InferEngine | None = None,
        hook: AdmissionHook | None = None,
        on_done: Callable[[str, str, float], None] | None = None,
        on_refused: Callable[[str], None] | None = None,
        guard: SwarmGuard | None = None,
        tables: TablesSection | None = None,
        replay_store: ReplayStore | None = None,
        ledger: LedgerSection | None = None,
        migrate: Callable[[Snapshot, Sequence[str], Sequence[str]], Awaitable[tuple[str, bytes]]] | None = None,
        ship: Callable[[str, str, Snapshot], Awaitable[None]] | None = None,
        keep: Callable[[bytes], None] | None = None,
    ) -> None:
        self.signer = signer
        self.keep = keep
        """Called (on the loop, must not block) with a module this executor fetched and compiled: the node
        keeps it to serve to peers and announces it (None: modules are not kept)."""
        self.transport = transport
        self.chain = chain
        self.clock = clock
        self.admission = admission
        self.wasm = wasm
        self.infer = infer
        self.hook = hook
        self.on_done = on_done
        self.on_refused = on_refused
        self.guard = guard
        """Swarm mode: membership, per-peer limits and the local capability policy (None: open mode)."""
        self.tables = tables or TablesSection()
        """Bounds on the replay table, the receipt cache and the size of a spec."""
        self.ledger = ledger or LedgerSection()
        """Who may keep a task's plaintext payload in the ledger, and how large (``[ledger]``)."""
        self.replay = ReplayGuard(max_nonce_bytes=self.tables.nonce_max_bytes, max_entries=self.tables.replay_entries)
        self.replay_store: ReplayStore = replay_store or MemoryReplayStore()
        """Keeps the replay table across restarts (an SQLite file in a node's home)."""
        self._loaded: asyncio.Future[None] | None = None
        self._forget_at = 0
        self.counts: Counter[str] = Counter()
        self._slots = asyncio.Semaphore(admission.slots)
        self._done: OrderedDict[tuple[bytes, str], bytes] = OrderedDict()
        self._done_bytes = 0
        self._running: dict[tuple[bytes, str], asyncio.Future[bytes]] = {}
        self._inflight: set[asyncio.Task[bytes]] = set()
        self._waiting: set[asyncio.Task[bytes]] = set()
        """Admitted tasks waiting for a slot (queued)."""
        self._recording: set[asyncio.Task[bytes]] = set()
        """Tasks appending their result to the ledger: never cancelled (the entry may be on disk)."""
        self._handing_back = False
        self.closing = False
        self.migrate = migrate
        """Hands a checkpointed task to another executor (``snapshot, to, requires``): (its peer id, its
        sealed receipt); raises ``EdgenodeError`` when none takes it. ``None``: tasks do not move."""
        self._moves: dict[str, tuple[Sequence[str], Sequence[str], asyncio.Future[str]]] = {}
        """Ordered moves (:meth:`move`): task id -> (executors, capabilities, the future of who took it)."""
        self.ship = ship
        """Sends a periodic snapshot to a peer: (peer, task id, snapshot); ``None``: no periodic checkpoints."""
        self._shipping: dict[str, asyncio.Task[None]] = {}
        self._runs: dict[tuple[bytes, str], PreparedRun] = {}
        """Running tasks that can be checkpointed (drain asks them to stop at a safe point)."""
        self._moving: dict[asyncio.Task[bytes], int] = {}
        """Tasks handed to another executor, waiting for its receipt -> the spec's expiry (unix ms):
        drain waits for them up to that expiry instead of cancelling them."""

    def capabilities(self) -> list[str]:
        caps: list[str] = []
        if self.wasm is not None:
            caps.append(KIND_WASM)
            caps.append(arch_capability())
        if self.infer is not None:
            caps.append(KIND_INFER)
            caps += [f"model:{m}" for m in self.infer.models()]
            caps += [f"provider:{p}" for p in self.infer.providers()]
        reach = self.transport.reachability  # AutoNAT's verdict (docs/protocol.md); none while unknown
        if reach != "unknown":
            caps.append(f"reach:{reach}")
        return caps

    def _seal(self, msg: object) -> bytes:
        return wire.seal(self.signer, msg)

    async def start(self) -> None:
        """Load the replay entries kept across a restart (:meth:`handle` does it on first use too)."""
        if self._loaded is None:
            self._loaded = asyncio.ensure_future(self._load_replay())
        await asyncio.shield(self._loaded)

    async def _load_replay(self) -> None:
        now = self.clock.now_ms()
        n = self.replay.restore(await self.replay_store.load(now), now)
        if n:
            log.info("replay entries restored", extra={"entries": n})

    async def close(self) -> None:
        """Close the replay store (after :meth:`drain`)."""
        await self.replay_store.close()

    @property
    def cached_receipts(self) -> tuple[int, int]:
        """Receipts kept to answer repeated requests: (count, total bytes)."""
        return len(self._done), self._done_bytes

    async def handle(self, sender: str, data: bytes, *, resume: Snapshot | None = None) -> bytes:
        """The :data:`TASK_PROTOCOL` request handler (``resume``: the task continues from a snapshot)."""
        guard = self.guard
        if guard is not None:
            try:
                await guard.admit_request(sender, "task")
            except Refused as exc:
                self._refused(exc.reason)
                return self._seal(Rejected("", Reason.FORBIDDEN, str(exc)))
        if len(data) > self.tables.spec_max_bytes:
            self._refused("invalid")
            if guard is not None:
                guard.offence(sender, "malformed", data[:4096])
            return self._seal(Rejected("", Reason.TOO_LARGE, f"{len(data)} > {self.tables.spec_max_bytes} bytes"))
        await self.start()
        try:
            env, spec = wire.open_as(TaskSpec, data)
        except EdgenodeError as exc:
            self._refused("invalid")
            if guard is not None:
                guard.offence(sender, "invalid_signature" if isinstance(exc, SignatureError) else "malformed", data)
            return self._seal(Rejected("", Reason.MALFORMED, f"invalid spec: {exc}"))
        now = self.clock.now_ms()
        grant: Grant | None = None
        if guard is not None:
            try:
                if env.author_id != sender:
                    raise Refused("wrong_holder", "the spec must come from its author")
                grant = decide(capability_request(spec), guard.check_known(sender).roles, guard.policy)
            except Refused as exc:
                guard.refuse(sender, exc)
                self._refused(exc.reason)
                return self._seal(Rejected(spec.task_id, Reason.FORBIDDEN, str(exc)))
        key = (env.author, spec.task_id)
        cached = self._done.get(key)
        if cached is not None:
            self.counts["repeat"] += 1
            return cached
        running = self._running.get(key)
        if running is not None:
            self.counts["repeat"] += 1
            return await asyncio.shield(running)
        refusal = self._refusal(env, spec, now)
        if refusal is not None and refusal[0] == Reason.REPLAY_FULL:
            self._refused("busy")
            deadline = self.replay.next_deadline()
            return self._seal(Busy(spec.task_id, *refusal, max(1, (deadline or now + 1000) - now)))
        if refusal is not None:
            replayed = refusal[0] == Reason.REPLAYED
            self._refused("replayed" if replayed and guard is not None else "rejected")
            if guard is not None and replayed:
                guard.offence(sender, "replayed", data)
            return self._seal(Rejected(spec.task_id, *refusal))
        try:
            spec = self._open_input(env, spec)
        except Refused as exc:
            self._refused(exc.reason)
            if guard is not None:
                guard.refuse(sender, exc)
                guard.offence(sender, "bad_ciphertext", data)
            return self._seal(Rejected(spec.task_id, Reason.FORBIDDEN, str(exc)))
        if self.closing:
            self._refused("busy")
            return self._seal(Busy(spec.task_id, Reason.STOPPING, "node stopping", _RETRY_MS))
        verdict = self.admission.offer(env.author_id, self.clock.monotonic_ms())
        if isinstance(verdict, Refuse):
            self._refused("busy")
            return self._seal(Busy(spec.task_id, verdict.reason, "", verdict.retry_after_ms))
        # admitted: only now is the nonce remembered (refused specs cost the table nothing)
        self.replay.record(env.author, spec.nonce, spec.expires_ms)
        task = asyncio.create_task(self._run_admitted(sender, env, spec, grant, resume))
        self._inflight.add(task)
        self._waiting.add(task)
        task.add_done_callback(self._forget_task)
        fut: asyncio.Future[bytes] = asyncio.ensure_future(task)
        self._running[key] = fut
        try:
            await self._persist_replay(env.author, spec.nonce, spec.expires_ms, now)
            return await asyncio.shield(fut)
        finally:
            self._running.pop(key, None)

    async def _persist_replay(self, author: bytes, nonce: bytes, expires_ms: int, now: int) -> None:
        """Keep an admitted spec's nonce in the replay store; now and then delete the expired ones."""
        try:
            await self.replay_store.add(author, nonce, expires_ms)
            if now >= self._forget_at:
                self._forget_at = now + _FORGET_EVERY_MS
                await self.replay_store.forget(now)
        except EdgenodeError as exc:
            log.warning("replay store write failed", extra={"error": str(exc)})

    def _cache_receipt(self, key: tuple[bytes, str], sealed: bytes) -> None:
        """Keep ``sealed`` for repeats, within ``[tables] receipts`` and ``receipt_bytes`` (oldest out first)."""
        limit = self.tables.receipt_bytes
        if len(sealed) > limit // 4:  # a huge receipt would flush the cache; repeats of it run again
            return
        old = self._done.pop(key, None)
        if old is not None:
            self._done_bytes -= len(old)
        self._done[key] = sealed
        self._done_bytes += len(sealed)
        while self._done and (len(self._done) > self.tables.receipts or self._done_bytes > limit):
            _k, gone = self._done.popitem(last=False)
            self._done_bytes -= len(gone)

    def _refused(self, why: str) -> None:
        self.counts[why] += 1
        if self.on_refused is not None:
            self.on_refused(why)

    def _open_input(self, env: wire.Envelope, spec: TaskSpec) -> TaskSpec:
        """The spec with its input decrypted (unchanged when not encrypted); Refused("bad_ciphertext")."""
        if not is_encrypted(spec):
            return spec
        if not isinstance(self.signer, Identity):
            raise Refused("bad_ciphertext", "this executor cannot decrypt payloads")
        return dataclasses.replace(spec, input=decrypt_from(self.signer, env.author, spec.input))

    def _seal_output(self, env: wire.Envelope, spec: TaskSpec, output: bytes) -> bytes:
        if is_encrypted(spec) and isinstance(self.signer, Identity):
            return encrypt_for(self.signer, env.author, output)
        return output

    def _refusal(self, env: wire.Envelope, spec: TaskSpec, now: int) -> tuple[Reason, str] | None:
        """Why this executor does not take ``spec`` (code, detail), or None."""
        if spec.kind not in (KIND_WASM, KIND_INFER):
            return Reason.UNKNOWN_KIND, f"unknown task kind {spec.kind!r}"
        if (self.wasm if spec.kind == KIND_WASM else self.infer) is None:
            return Reason.UNSUPPORTED_KIND, f"this node does not run {spec.kind!r} tasks"
        if spec.kind == KIND_WASM and not is_module_hash(spec.module):
            return Reason.BAD_MODULE, "module must be a sha256 hex digest"
        caps = set(self.capabilities())
        missing = [r for r in spec.requires if r not in caps]
        if spec.kind == KIND_INFER and f"model:{spec.module}" not in caps:
            missing.append(f"model:{spec.module}")
        if missing:
            return Reason.MISSING_CAPABILITY, f"missing capabilities {missing}"
        code = self.replay.check(env.author, spec.nonce, spec.expires_ms, now)
        if code is not None:
            return code, ""
        why = None if self.hook is None else self.hook(env)
        return None if why is None else (Reason.POLICY, why)

    def _forget_task(self, task: asyncio.Task[bytes]) -> None:
        self._inflight.discard(task)
        self._waiting.discard(task)
        self._recording.discard(task)

    async def _run_admitted(
        self, sender: str, env: wire.Envelope, spec: TaskSpec, grant: Grant | None, resume: Snapshot | None = None
    ) -> bytes:
        """Run one admitted task; the sealed answer: a receipt, or ``Busy`` when the node stops
        before it ran (or hands it back) or its result could not be recorded."""
        started = False
        me = asyncio.current_task()
        try:
            async with self._slots:
                self._waiting.discard(me)  # type: ignore[arg-type]
                if self.closing:  # got a slot while the node stops: it does not start
                    self.counts["unqueued"] += 1
                    return self._seal(Busy(spec.task_id, Reason.STOPPING, "node stopping", _RETRY_MS))
                self.admission.started()
                started = True
                return await self._run_in_slot(sender, env, spec, grant, me, resume)
        except asyncio.CancelledError:
            if not self._handing_back or me is None:
                raise
            me.uncancel()  # cancelled by drain(): answer the submitter instead of leaving it waiting
            self.counts["handed_back" if started else "unqueued"] += 1
            return self._seal(Busy(spec.task_id, Reason.STOPPING, "handed back: node stopping", _RETRY_MS))
        finally:
            if started:
                self.admission.finished()
            else:
                self.admission.abandoned()

    async def _run_in_slot(
        self,
        sender: str,
        env: wire.Envelope,
        spec: TaskSpec,
        grant: Grant | None,
        me: asyncio.Task[Any] | None,
        resume: Snapshot | None = None,
    ) -> bytes:
        t0 = self.clock.monotonic_ms()
        stopped: list[Snapshot] = []
        status, exit_code, output, stderr, fuel, wall = await self._execute(
            sender, spec, grant, env=env, resume=resume, stopped=stopped
        )
        s_hash = spec_hash(env.body)
        while stopped:  # checkpointed (drain, or an ordered move): the task moves on
            if me is not None:
                self._moving[me] = spec.expires_ms  # type: ignore[index]
            try:
                moved = await self._hand_over(env, spec, s_hash, stopped[0])
            finally:
                self._moving.pop(me, None)  # type: ignore[arg-type]
            if moved is not None or self.closing:
                return moved or self._seal(Busy(spec.task_id, Reason.STOPPING, "handed back: node stopping",
                                                _RETRY_MS))
            resume, stopped = stopped[0], []  # no one took it and this node goes on: resume it here
            status, exit_code, output, stderr, fuel, wall = await self._execute(
                sender, spec, grant, env=env, resume=resume, stopped=stopped
            )
        if resume is not None:
            resumed = ResumedRecord(spec.task_id, s_hash, resume.id, resume.state.fuel_used,
                                    peer_id_from_public_key(resume.author))
            try:
                await self.chain.append(RESUMED_KIND, wire.to_bytes(resumed))
            except EdgenodeError as exc:
                log.warning("task resume not recorded", extra={"task_id": spec.task_id, "error": str(exc)})
        out_hash = hashlib.sha256(output).hexdigest()
        record = TaskRecord(
            spec.task_id, s_hash, env.author_id, spec.kind, spec.module,
            hashlib.sha256(spec.input).hexdigest(), out_hash, status, exit_code, fuel,
        )  # fmt: skip
        if me is not None:
            self._recording.add(me)  # type: ignore[arg-type]
        try:
            appended = await self.chain.append(RESULT_KIND, wire.to_bytes(record))
        except EdgenodeError as exc:
            log.warning("task result not recorded", extra={"task_id": spec.task_id, "error": str(exc)})
            self.counts["ledger_failed"] += 1
            return self._seal(Busy(spec.task_id, Reason.LEDGER_FAILED, "result not recorded", _RETRY_MS))
        if spec.policy.get(POLICY_LEDGER_PAYLOAD) == "1":
            await self._keep_payload(sender, spec, output)
        receipt = Receipt(
            spec.task_id, s_hash, status, exit_code, self._seal_output(env, spec, output), out_hash,
            stderr, fuel, wall, appended.entry.to_bytes(),
            b"" if appended.prev is None else appended.prev.to_bytes(with_body=False),
            {} if grant is None else grant.as_dict(),
        )  # fmt: skip
        sealed = self._seal(receipt)
        self._cache_receipt((env.author, spec.task_id), sealed)
        self.counts[f"status:{status}"] += 1
        if self.on_done is not None:
            self.on_done(spec.kind, status, self.clock.monotonic_ms() - t0)
        return sealed

    async def _keep_payload(self, sender: str, spec: TaskSpec, output: bytes) -> None:
        """The plaintext input and output into the ledger (the spec asked for it), only under a grant
        (open mode: ``[ledger] payload_open``; swarm mode: a role in ``payload_roles``) and only up to
        ``payload_max_bytes``; otherwise counted (``payload_not_granted``, ``payload_too_large``)."""
        body = wire.to_bytes(TaskPayload(spec.task_id, spec.input, output))
        why = self._payload_refusal(sender, len(body))
        if why is not None:
            self.counts[why] += 1
            log.info("task payload not kept", extra={"task_id": spec.task_id, "reason": why, "bytes": len(body)})
            return
        try:
            await self.chain.append(PAYLOAD_KIND, body)
        except EdgenodeError as exc:  # the result is recorded; only the payload is missing
            self.counts["payload_failed"] += 1
            log.warning("task payload not recorded", extra={"task_id": spec.task_id, "error": str(exc)})

    def _payload_refusal(self, sender: str, size: int) -> str | None:
        rule = self.ledger
        if self.guard is None:
            if not rule.payload_open:
                return "payload_not_granted"
        else:
            try:
                roles = self.guard.check_known(sender).roles
            except Refused:
                return "payload_not_granted"
            if "admin" not in roles and not any(r in rule.payload_roles for r in roles):
                return "payload_not_granted"
        if size > min(rule.payload_max_bytes, MAX_BODY_BYTES):
            return "payload_too_large"
        return None

    async def _execute(
        self,
        sender: str,
        spec: TaskSpec,
        grant: Grant | None = None,
        *,
        env: wire.Envelope | None = None,
        resume: Snapshot | None = None,
        stopped: list[Snapshot] | None = None,
    ) -> tuple[str, int, bytes, bytes, int, float]:
        if spec.kind == KIND_INFER:
            assert self.infer is not None
            engine = self.infer
            t0 = self.clock.monotonic_ms()
            try:
                out = await _blocking(engine, engine.infer, spec.module, spec.input)
            except EdgenodeError as exc:
                return "error", -1, b"", _failure("infer failed", spec, exc), 0, self.clock.monotonic_ms() - t0
            return STATUS_OK, 0, out, b"", 0, self.clock.monotonic_ms() - t0
        assert self.wasm is not None
        wasm = self.wasm
        if not wasm.has_module(spec.module):
            try:
                # from the submitter, else from any provider the DHT names (the submitter may be unreachable)
                blob = await self.transport.fetch_blob_anywhere(spec.module, sender, timeout=30.0)
                await _blocking(wasm, wasm.compile, blob)
                if self.keep is not None:
                    self.keep(blob)
            except InvalidModule as exc:  # bad bytes, over the size limits, or a compile timeout
                return str(exc.status), -1, b"", _failure("cannot get module", spec, exc), 0, 0.0
            except EdgenodeError as exc:
                return "invalid_module", -1, b"", _failure("cannot get module", spec, exc), 0, 0.0
        lim = spec.limits
        try:
            limits = Limits(lim.fuel, lim.timeout_ms, lim.memory_mb, lim.max_output_bytes)
        except ValueError as exc:
            return "invalid_limits", -1, b"", str(exc).encode(), 0, 0.0
        data_dir = None
        if grant is not None and grant.data_dirs and self.guard is not None:
            data_dir = Path(self.guard.policy.data_dirs[grant.data_dirs[0]])
        io = TaskIO(stdin=spec.input, args=spec.args, models=spec.models, readonly_dir=data_dir)
        movable = env is not None and data_dir is None and not is_encrypted(spec) and hasattr(wasm, "prepare")
        try:
            if movable and (self.migrate is not None or resume is not None or checkpoint_ms(spec)):
                assert env is not None
                res = await self._run_movable(wasm, spec, io, limits, env, resume, sender)
            else:
                res = await _blocking(wasm, wasm.run, spec.module, io, limits)
        except EdgenodeError as exc:
            return "error", -1, b"", _failure("run failed", spec, exc), 0, 0.0
        if res.snapshot is not None and str(res.status) == "checkpointed" and stopped is not None:
            stopped.append(res.snapshot)
        return str(res.status), res.exit_code, res.stdout, res.stderr, res.fuel_used, res.wall_ms

    async def drain(self, timeout: float) -> DrainReport:
        """Stop taking work; answer the queued tasks ``Busy(stopping)`` at once; wait (at most
        ``timeout`` s) for the running ones, then hand back (cancel, answer busy) those still running.

        A task already appending its result is never cancelled: it ends when the ledger write does
        (the writer answers every append).  When this returns, every admitted task has answered.
        """
        self.closing = True
        self._handing_back = True
        self.checkpoint_all()  # they stop at their next safe point and move on
        queued = list(self._waiting)
        for task in queued:
            task.cancel()
        before = len(self._inflight) - len(queued)
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=timeout)
        late = [t for t in self._inflight if t not in self._recording and t not in self._moving]
        for task in late:
            task.cancel()
        if self._inflight:
            # a task handed to another executor is waited for until its spec expires (its answer is coming)
            moving_s = max((exp - self.clock.now_ms()) / 1000.0 for exp in self._moving.values()) if self._moving else 0
            await asyncio.wait(set(self._inflight), timeout=max(timeout, min(moving_s, _MAX_MOVING_WAIT_S)))
        stuck = list(self._inflight)  # ledger writes past a second budget: the store hangs
        for task in stuck:
            task.cancel()
        if stuck:
            log.warning("ledger writes still in flight at stop", extra={"tasks": len(stuck)})
            await asyncio.wait(stuck)
        handed = len(late) + len(stuck)
        return DrainReport(finished=max(0, before - handed), unqueued=len(queued), handed_back=handed)


def _failure(what: str, spec: TaskSpec, exc: EdgenodeError) -> bytes:
    """The stderr a receipt carries for a local failure: a code for the submitter, the detail in our log."""
    code = getattr(exc, "reason", None) or type(exc).__name__
    log.warning(what, extra={"task_id": spec.task_id, "error": str(exc), "code": code})
    return f"{what}: {code} (details in the executor's log)".encode()[:4096]
