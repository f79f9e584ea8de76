"""The executor side of the task protocol: admit, fetch, run, record, answer with a receipt.

An adapter around the sans-IO cores (:class:`~edgenode.scheduler.Admission`,
:class:`~edgenode.scheduler.ReplayGuard`): the request handler registered on
:data:`~edgenode.protocol.TASK_PROTOCOL` calls :meth:`Executor.handle`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable

from .. import wire
from ..errors import EdgenodeError
from ..net import Transport
from ..protocol import (
    KIND_INFER,
    KIND_WASM,
    RESULT_KIND,
    STATUS_OK,
    Busy,
    Receipt,
    Rejected,
    TaskRecord,
    TaskSpec,
    spec_hash,
)
from ..sandbox import Limits, TaskIO
from ..scheduler import Admission, Refuse, ReplayGuard
from ..wire import Signer
from ._chain import ChainWriter
from ._ports import AdmissionHook, Clock, InferEngine, WasmEngine

__all__ = ["Executor", "RESULT_CACHE"]

RESULT_CACHE = 4096
"""Receipts kept per (submitter, task id): a repeated task is answered, not run (nor recorded) twice."""

log = logging.getLogger("edgenode.executor")


class Executor:
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
    ) -> None:
        self.signer = signer
        self.transport = transport
        self.chain = chain
        self.clock = clock
        self.admission = admission
        self.wasm = wasm
        self.infer = infer
        self.hook = hook
        self.on_done = on_done
        self.on_refused = on_refused
        self.replay = ReplayGuard()
        self.counts: Counter[str] = Counter()
        self._slots = asyncio.Semaphore(admission.slots)
        self._done: OrderedDict[tuple[bytes, str], bytes] = OrderedDict()
        self._running: dict[tuple[bytes, str], asyncio.Future[bytes]] = {}
        self._inflight: set[asyncio.Task[bytes]] = set()
        self.closing = False

    def capabilities(self) -> list[str]:
        caps: list[str] = []
        if self.wasm is not None:
            caps.append(KIND_WASM)
        if self.infer is not None:
            caps.append(KIND_INFER)
            caps += [f"model:{m}" for m in self.infer.models()]
            caps += [f"provider:{p}" for p in self.infer.providers()]
        return caps

    def _seal(self, msg: object) -> bytes:
        return wire.seal(self.signer, msg)

    async def handle(self, sender: str, data: bytes) -> bytes:
        """The :data:`TASK_PROTOCOL` request handler."""
        try:
            env, spec = wire.open_as(TaskSpec, data)
        except EdgenodeError as exc:
            self._refused("invalid")
            return self._seal(Rejected("", f"invalid spec: {exc}"))
        now = self.clock.now_ms()
        key = (env.author, spec.task_id)
        cached = self._done.get(key)
        if cached is not None:
            self.counts["repeat"] += 1
            return cached
        running = self._running.get(key)
        if running is not None:
            self.counts["repeat"] += 1
            return await asyncio.shield(running)
        reason = self._refusal(env, spec, now)
        if reason is not None:
            self._refused("rejected")
            return self._seal(Rejected(spec.task_id, reason))
        if self.closing:
            self._refused("busy")
            return self._seal(Busy(spec.task_id, "node stopping", 1000))
        verdict = self.admission.offer(env.author_id, now)
        if isinstance(verdict, Refuse):
            self._refused("busy")
            return self._seal(Busy(spec.task_id, verdict.reason, verdict.retry_after_ms))
        task = asyncio.create_task(self._run_admitted(sender, env, spec))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        fut: asyncio.Future[bytes] = asyncio.ensure_future(task)
        self._running[key] = fut
        try:
            return await asyncio.shield(fut)
        finally:
            self._running.pop(key, None)

    def _refused(self, why: str) -> None:
        self.counts[why] += 1
        if self.on_refused is not None:
            self.on_refused(why)

    def _refusal(self, env: wire.Envelope, spec: TaskSpec, now: int) -> str | None:
        if spec.kind not in (KIND_WASM, KIND_INFER):
            return f"unknown task kind {spec.kind!r}"
        if (self.wasm if spec.kind == KIND_WASM else self.infer) is None:
            return f"this node does not run {spec.kind!r} tasks"
        caps = set(self.capabilities())
        missing = [r for r in spec.requires if r not in caps]
        if spec.kind == KIND_INFER and f"model:{spec.module}" not in caps:
            missing.append(f"model:{spec.module}")
        if missing:
            return f"missing capabilities {missing}"
        why = self.replay.check(env.author, spec.nonce, spec.expires_ms, now)
        if why is not None:
            return why
        return None if self.hook is None else self.hook(env)

    async def _run_admitted(self, sender: str, env: wire.Envelope, spec: TaskSpec) -> bytes:
        started = False
        try:
            async with self._slots:
                self.admission.started()
                started = True
                t0 = self.clock.now_ms()
                status, exit_code, output, stderr, fuel, wall = await self._execute(sender, spec)
                out_hash = hashlib.sha256(output).hexdigest()
                s_hash = spec_hash(env.body)
                record = TaskRecord(
                    spec.task_id, s_hash, env.author_id, spec.kind, spec.module,
                    hashlib.sha256(spec.input).hexdigest(), out_hash, status, exit_code, fuel,
                )
                appended = await self.chain.append(RESULT_KIND, wire.to_bytes(record))
                receipt = Receipt(
                    spec.task_id, s_hash, status, exit_code, output, out_hash, stderr, fuel, wall,
                    appended.entry.to_bytes(),
                    b"" if appended.prev is None else appended.prev.to_bytes(with_body=False),
                )
                sealed = self._seal(receipt)
                self._done[(env.author, spec.task_id)] = sealed
                while len(self._done) > RESULT_CACHE:
                    self._done.popitem(last=False)
                self.counts[f"status:{status}"] += 1
                if self.on_done is not None:
                    self.on_done(spec.kind, status, float(self.clock.now_ms() - t0))
                return sealed
        finally:
            if started:
                self.admission.finished()
            else:
                self.admission.abandoned()

    async def _execute(self, sender: str, spec: TaskSpec) -> tuple[str, int, bytes, bytes, int, float]:
        if spec.kind == KIND_INFER:
            assert self.infer is not None
            engine = self.infer
            t0 = self.clock.now_ms()
            try:
                out = await asyncio.to_thread(engine.infer, spec.module, spec.input)
            except EdgenodeError as exc:
                return "error", -1, b"", str(exc).encode()[:4096], 0, float(self.clock.now_ms() - t0)
            return STATUS_OK, 0, out, b"", 0, float(self.clock.now_ms() - t0)
        assert self.wasm is not None
        wasm = self.wasm
        if not wasm.has_module(spec.module):
            try:
                blob = await self.transport.fetch_blob(sender, spec.module, timeout=30.0)
                await asyncio.to_thread(wasm.compile, blob)
            except EdgenodeError as exc:
                return "invalid_module", -1, b"", f"cannot get module: {exc}".encode()[:4096], 0, 0.0
        lim = spec.limits
        try:
            limits = Limits(lim.fuel, lim.timeout_ms, lim.memory_mb, lim.max_output_bytes)
        except ValueError as exc:
            return "invalid_limits", -1, b"", str(exc).encode(), 0, 0.0
        io = TaskIO(stdin=spec.input, args=spec.args, models=spec.models)
        try:
            res = await asyncio.to_thread(wasm.run, spec.module, io, limits)
        except EdgenodeError as exc:
            return "error", -1, b"", str(exc).encode()[:4096], 0, 0.0
        return str(res.status), res.exit_code, res.stdout, res.stderr, res.fuel_used, res.wall_ms

    async def drain(self, timeout: float) -> None:
        """Stop taking work and wait (at most ``timeout`` s) for the tasks in flight."""
        self.closing = True
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=timeout)
