"""The submitter: a (light) peer that places tasks, follows them to a verified receipt.

Used by ``edgenode submit|infer|status`` (with an ephemeral key) and by the
simulator's workload driver.  The decisions are the sans-IO cores'
(:func:`~edgenode.scheduler.place`, :class:`~edgenode.scheduler.TaskTracker`,
:class:`~edgenode.scheduler.OfferBook`); this class only moves bytes and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from .. import wire
from ..errors import EdgenodeError, RemoteError
from ..identity import Identity, public_key_from_peer_id
from ..net import (
    BLOB_PROTOCOL,
    DIRECT_FIRST_S,
    GossipMessage,
    MemoryBlobStore,
    NetError,
    RequestTimeout,
    Transport,
    Unreachable,
)
from ..protocol import (
    ADVERT_TOPIC,
    BID_TOPIC,
    KIND_INFER,
    KIND_WASM,
    TASK_PROTOCOL,
    WORK_TOPIC,
    Advert,
    Bid,
    Busy,
    InvalidReceipt,
    NoExecutor,
    NoMajority,
    Offer,
    Rejected,
    SpecExpired,
    TaskLimits,
    TaskSpec,
    TaskTimeout,
    VerifiedReceipt,
    result_key,
    verify_opened_receipt,
)
from ..reasons import Reason
from ..scheduler import (
    SLA_LATENCY,
    Action,
    AdvertTable,
    Assign,
    Done,
    Failed,
    OfferBook,
    PlacementRequest,
    RttTable,
    TaskTracker,
    place,
)
from ..security import (
    ENC_BOX,
    POLICY_DATA_DIRS,
    POLICY_ENC,
    POLICY_LEDGER_PAYLOAD,
    Refused,
    SwarmGuard,
    check_grant,
    decrypt_from,
    encrypt_for,
)
from ..wire import Signer
from ._migrate import (
    MIGRATE_PROTOCOL,
    POLICY_CHECKPOINT_MS,
    SNAPSHOT_PROTOCOL,
    Handover,
    SnapshotKeeper,
    verify_handover,
)
from ._ports import Clock, SystemClock
from ._status import ask_status

__all__ = ["Submitter", "TaskOutcome", "TaskRequest"]

_STAGGER_S = 0.25
"""Happy eyeballs: each further address is dialled this long after the one before (at once when it failed)."""
_RELAY_AFTER_S = 1.0
"""... and the first relayed address this long after the last direct one."""


@dataclass(frozen=True)
class TaskRequest:
    """What to run; the submitter turns it into signed specs."""

    kind: str
    module: str
    """sha256 hex of the module (its bytes must be in the submitter's blob store) or the model hash."""
    input: bytes = b""
    args: tuple[str, ...] = ()
    limits: TaskLimits = field(default_factory=TaskLimits)
    requires: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    deadline_ms: int = 10_000
    """Total time budget: the spec expires after it."""
    redundancy: int = 1
    sla: str = SLA_LATENCY
    market: bool = False
    """Ask for bids on the work topic instead of choosing from adverts."""
    attempt_ms: int | None = None
    """Silence after which an executor is replaced (default: half the deadline, at least the run limit + 2 s)."""
    data_dirs: tuple[str, ...] = ()
    """Names of read-only data directories the task needs (granted by the executor's policy)."""
    ledger_payload: bool = False
    """Ask the executor to keep the plaintext input and output in its ledger (default: hashes only)."""
    checkpoint_ms: int = 0
    """Ask the executor of a task with safe points for a snapshot every this many ms, shipped here; when
    the executor dies, the next one resumes from the latest (0: none; not with encryption or /data)."""


@dataclass(frozen=True)
class TaskOutcome:
    """A finished task: the agreed result and its verified receipts."""

    task_id: str
    status: str
    exit_code: int
    output: bytes
    stderr: bytes
    executor: str
    receipts: tuple[VerifiedReceipt, ...]
    disagreeing: tuple[tuple[str, str], ...]
    """(peer, status:output_hash) of executors outvoted by the majority."""
    latency_ms: float
    attempts: int
    notes: tuple[str, ...] = ()
    """Why executors tried before were given up (busy, silent, unreachable, invalid receipt)."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class _Answer:
    peer: str
    verified: VerifiedReceipt | None
    code: Reason | None = None
    """Why there is no verified receipt (None when there is one)."""
    detail: str = ""


class Submitter:
    """Places tasks on a swarm and returns verified outcomes."""

    def __init__(
        self,
        signer: Signer,
        transport: Transport,
        clock: Clock | None = None,
        blobs: MemoryBlobStore | None = None,
        offer_window_ms: int = 500,
        *,
        guard: SwarmGuard | None = None,
        encrypt: bool | None = None,
        follow_adverts: bool = False,
        advert_refresh_ms: int = 5_000,
    ) -> None:
        self.signer = signer
        self.transport = transport
        self.clock: Clock = clock or SystemClock()
        self.blobs = blobs or MemoryBlobStore()
        self.adverts = AdvertTable()
        self.rtt = RttTable()
        self.offer_window_ms = offer_window_ms
        self._addrs: dict[str, tuple[str, ...]] = {}
        self._bids: dict[str, OfferBook] = {}
        self._bg: list[asyncio.Task[object]] = []
        self._pending: Counter[str] = Counter()
        self._served = False
        self.guard = guard
        """Swarm mode: executors must be members, receipts must carry grants (None: open mode)."""
        self.encrypt = (guard is not None) if encrypt is None else encrypt
        """Encrypt inputs to the executor and outputs back (default: on in swarm mode)."""
        if self.encrypt and not isinstance(signer, Identity):
            raise ValueError("payload encryption needs an Identity as the signer")
        self.follow_adverts = follow_adverts
        """Join the advert topic (a long-lived peer); otherwise ask the connected peers for
        their adverts when the table is ``advert_refresh_ms`` old (a light submitter stays out
        of the advert mesh and costs the swarm nothing while it is idle)."""
        self.advert_refresh_ms = advert_refresh_ms
        self._refreshed_ms: float | None = None
        """Monotonic time of the last refresh."""
        self._refreshing: asyncio.Task[list[Advert]] | None = None
        self.snapshots = SnapshotKeeper(transport, self.blobs)
        """Latest snapshots of running tasks that asked for periodic checkpoints."""

    # -- joining ------------------------------------------------------------------
    async def start(self) -> None:
        """Serve our blobs and follow adverts and bids (call once, after the transport started)."""
        if not self._served:
            self.transport.serve_blobs(self.blobs)
            self.transport.serve(SNAPSHOT_PROTOCOL, self.snapshots.handle)
            self._served = True
            if self.guard is not None:
                await self.guard.start(self.transport)
                self.transport.serve(BLOB_PROTOCOL, self.guard.guard_blobs(self.blobs))
                self.transport.serve(SNAPSHOT_PROTOCOL, self.guard.guard_handler("request", self.snapshots.handle))
            if self.follow_adverts:
                self._bg.append(
                    asyncio.create_task(self._follow(self.transport.subscribe(ADVERT_TOPIC), self._on_advert))
                )
            self._bg.append(asyncio.create_task(self._follow(self.transport.subscribe(BID_TOPIC), self._on_bid)))

    async def close(self) -> None:
        if self.guard is not None:
            await self.guard.stop()
        if self._refreshing is not None:
            self._bg.append(self._refreshing)
            self._refreshing = None
        for t in self._bg:
            t.cancel()
        for t in self._bg:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._bg.clear()

    async def join(self, bootstrap: Sequence[str], timeout: float = 10.0) -> list[str]:
        """Dial the bootstrap peers and learn adverts from them; Unreachable if none answers."""
        await self.start()
        joined: list[str] = []
        errors: list[str] = []
        for addr in bootstrap:
            try:
                joined.append(await self.transport.connect(addr, timeout=timeout))
            except NetError as exc:
                errors.append(f"{addr}: {exc}")
        if not joined:
            raise Unreachable("no bootstrap peer reachable" + (f" ({'; '.join(errors)})" if errors else ""))
        await self.refresh(joined, timeout=timeout)
        return joined

    async def refresh(self, peers: Sequence[str] | None = None, timeout: float = 5.0) -> list[Advert]:
        """Ask ``peers`` (default: all connected) for their adverts and the adverts they hold."""
        targets = list(peers if peers is not None else self.transport.peers())
        self._refreshed_ms = self.clock.monotonic_ms()
        answers = await ask_status(self.transport, self.signer, targets, timeout)
        now = self.clock.now_ms()
        for st in answers:
            self.adverts.update(st.reply.advert, st.sealed, now)
            self._addrs[st.peer] = st.reply.advert.addrs
            for sealed in st.reply.known:
                self._on_advert_bytes(sealed, now)
        return self.adverts.live(now)

    async def _fresh_adverts(self, now: int) -> None:
        """Refresh the advert table from the connected peers when it is stale (one refresh at a time;
        placement waits for it only when no live advert is left).  ``now``: wall time."""
        last = self._refreshed_ms
        if self.follow_adverts or (last is not None and self.clock.monotonic_ms() - last < self.advert_refresh_ms):
            return
        if not self.transport.peers():
            return
        if self._refreshing is None or self._refreshing.done():  # refresh() notes its own time
            self._refreshing = asyncio.create_task(self.refresh(timeout=max(0.5, self.advert_refresh_ms / 2000)))
        if not self.adverts.live(now):
            with contextlib.suppress(NetError):
                await asyncio.shield(self._refreshing)

    async def _follow(self, sub: AsyncIterator[GossipMessage], fn: object) -> None:
        assert callable(fn)
        async for msg in sub:
            fn(msg)

    def _on_advert(self, msg: GossipMessage) -> None:
        self._on_advert_bytes(msg.data, self.clock.now_ms(), sender=msg.sender)

    def _on_advert_bytes(self, sealed: bytes, now: int, sender: str | None = None) -> None:
        try:
            env, adv = wire.open_as(Advert, sealed)
        except RemoteError:
            return
        if env.author_id != adv.peer_id or (sender is not None and sender != adv.peer_id):
            return
        if adv.peer_id == self.transport.peer_id:
            return
        self.adverts.update(adv, sealed, now)
        self._addrs[adv.peer_id] = adv.addrs

    def _on_bid(self, msg: GossipMessage) -> None:
        try:
            env, bid = wire.open_as(Bid, msg.data)
        except RemoteError:
            return
        book = self._bids.get(bid.offer_id)
        if book is not None and env.author_id == bid.bidder and book.add(bid, bid.bidder, self.clock.now_ms()):
            self._addrs[bid.bidder] = bid.addrs

    # -- submitting ---------------------------------------------------------------
    def add_module(self, module: bytes) -> str:
        """Make ``module`` fetchable by executors; return its sha256 hex."""
        return self.blobs.put(module)

    async def submit(self, req: TaskRequest) -> TaskOutcome:
        """Run ``req`` on the swarm; raise NoExecutor, TaskTimeout, SpecExpired, InvalidReceipt or NoMajority."""
        if req.kind not in (KIND_WASM, KIND_INFER):
            raise NoExecutor(f"unknown task kind {req.kind!r}")
        t0 = self.clock.now_ms()  # wall: the spec's signed expiry and the adverts' age
        started = self.clock.monotonic_ms()
        task_id = os.urandom(12).hex()
        expires = t0 + req.deadline_ms
        requires = tuple(dict.fromkeys((req.kind, *req.requires, *(f"model:{m}" for m in req.models))))
        if req.kind == KIND_INFER:
            requires = (*requires, f"model:{req.module}")
        if req.market:
            candidates = await self._ask_market(task_id, req, requires, expires)
        else:
            await self._fresh_adverts(t0)
            self.adverts.expire(t0)
            preq = PlacementRequest(requires, float(req.deadline_ms), req.sla)
            candidates = [c.peer for c in place(preq, self.adverts.live(t0), self.rtt, pending=self._pending)]
            if not candidates:
                candidates = await self._ask_market(task_id, req, requires, expires)
        # Silence is judged generously (queueing on a loaded node is not death); a node that
        # dies or drops the connection fails the request at once and is replaced then.
        attempt_ms = req.attempt_ms or min(req.deadline_ms, max(req.limits.timeout_ms + 2000, req.deadline_ms // 2))
        # the tracker runs on monotonic time: its expiry is the spec's, measured from ``started``
        tracker = TaskTracker(task_id, candidates, int(started) + req.deadline_ms, attempt_ms, req.redundancy)
        answers: dict[str, VerifiedReceipt] = {}
        try:
            done = await self._drive(tracker, task_id, req, expires, answers)
        finally:
            self.snapshots.forget(task_id)
        chosen = [answers[p] for p in done.agreeing]
        first = chosen[0].receipt
        return TaskOutcome(
            task_id, first.status, first.exit_code, first.output, first.stderr, chosen[0].executor,
            tuple(chosen), done.disagreeing, self.clock.monotonic_ms() - started, len(tracker.tried),
            tuple(tracker.reasons),
        )

    async def _drive(
        self, tracker: TaskTracker, task_id: str, req: TaskRequest, expires: int, answers: dict[str, VerifiedReceipt]
    ) -> Done:
        pending: dict[asyncio.Task[_Answer], str] = {}
        actions: list[Action] = tracker.start(self._mono())
        try:
            while True:
                for act in actions:
                    if isinstance(act, Assign):
                        t = asyncio.create_task(self._attempt(act, task_id, req, expires))
                        pending[t] = act.peer
                    elif isinstance(act, Done):
                        return act
                    elif isinstance(act, Failed):
                        raise self._failure(act, tracker)
                actions = []
                now = self._mono()
                deadline = tracker.next_deadline()
                wait = max(0.0, ((deadline if deadline is not None else now) - now) / 1000.0)
                if pending:
                    finished, _ = await asyncio.wait(pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                else:
                    finished = set()
                    await asyncio.sleep(wait)
                now = self._mono()
                for t in finished:
                    pending.pop(t)
                    ans = t.result()
                    if ans.verified is not None:
                        answers[ans.peer] = ans.verified
                        rc = ans.verified.receipt
                        actions += tracker.on_result(ans.peer, result_key(rc.status, rc.output_hash), now)
                    else:
                        actions += tracker.on_refused(ans.peer, ans.code or Reason.NET_FAILED, ans.detail, now)
                if not finished:
                    actions += tracker.on_timer(now)
        finally:
            for t in pending:
                t.cancel()

    def _mono(self) -> int:
        return int(self.clock.monotonic_ms())

    def _failure(self, act: Failed, tracker: TaskTracker) -> EdgenodeError:
        detail = "; ".join(tracker.reasons[-5:])
        codes = tracker.codes
        if act.reason == Reason.TIMEOUT:
            return TaskTimeout(f"no verified result before the deadline ({detail or 'no answer'})")
        if act.reason == Reason.NO_MAJORITY:
            return NoMajority(f"executors disagree on the output ({detail})")
        if Reason.INVALID_RECEIPT in codes:
            return InvalidReceipt(f"no valid receipt: {detail}")
        if codes and all(c == Reason.EXPIRED for c in codes):
            return SpecExpired(f"executors refused the spec as expired ({detail}); check the clock")
        return NoExecutor(f"no node can take the task ({detail or 'no capable node known'})")

    def _spec(self, task_id: str, req: TaskRequest, expires: int, attempt: int, peer: str = "") -> TaskSpec:
        policy: dict[str, str] = {}
        data = req.input
        if req.data_dirs:
            policy[POLICY_DATA_DIRS] = ",".join(req.data_dirs)
        if req.ledger_payload:
            policy[POLICY_LEDGER_PAYLOAD] = "1"
        if req.checkpoint_ms > 0 and not self.encrypt:
            policy[POLICY_CHECKPOINT_MS] = str(req.checkpoint_ms)
        if self.encrypt and peer:
            assert isinstance(self.signer, Identity)
            data = encrypt_for(self.signer, public_key_from_peer_id(peer), req.input)
            policy[POLICY_ENC] = ENC_BOX
        return TaskSpec(
            task_id=task_id, kind=req.kind, module=req.module, input=data, args=req.args,
            limits=req.limits, requires=req.requires, models=req.models, nonce=os.urandom(16),
            issued_ms=self.clock.now_ms(), expires_ms=expires, attempt=attempt, policy=policy,
        )

    def _decrypter(self, peer: str) -> Callable[[bytes], bytes] | None:
        if not self.encrypt:
            return None
        assert isinstance(self.signer, Identity)
        me, theirs = self.signer, public_key_from_peer_id(peer)
        return lambda ct: decrypt_from(me, theirs, ct)

    async def _ensure_connected(self, peer: str, timeout: float) -> None:
        if peer in self.transport.peers():
            return
        errors: list[str] = []
        known = self._addrs.get(peer, ())
        if await self._dial_any(known, timeout, errors):
            return
        # behind NATs: what the advert said may be stale or private; ask peer routing (the DHT)
        try:
            found = [a for a in await self.transport.find_peer(peer) if a not in known]
        except NetError as exc:
            errors.append(f"peer routing: {exc}")
            found = []
        if await self._dial_any(found, timeout, errors):
            self._addrs[peer] = tuple(dict.fromkeys((*found, *known)))
            return
        raise Unreachable(f"cannot dial {peer}: {'; '.join(errors) or 'no address'}")

    async def _dial_any(self, addrs: Sequence[str], timeout: float, errors: list[str]) -> bool:
        """Dial ``addrs``, happy-eyeballs style: direct ones first, ``/p2p-circuit`` ones (through
        their relay) from _RELAY_AFTER_S later; the first connection cancels the other dials."""
        direct = [a for a in addrs if "/p2p-circuit" not in a]
        relayed = [a for a in addrs if "/p2p-circuit" in a]
        # a private address behind a NAT may swallow the dial: its budget leaves time for the relay
        budget = min(timeout, DIRECT_FIRST_S) if relayed else timeout
        plan = [(a, _STAGGER_S, budget) for a in direct]
        plan += [(a, _RELAY_AFTER_S if i == 0 and direct else _STAGGER_S, timeout) for i, a in enumerate(relayed)]
        return await self._race(plan, timeout, errors)

    async def _race(self, plan: Sequence[tuple[str, float, float]], timeout: float, errors: list[str]) -> bool:
        """Dial each ``(addr, delay, budget)`` of ``plan`` ``delay`` s after the one before started
        (at once when that one failed), all within ``timeout``; the first to connect cancels the rest."""
        won = asyncio.Event()
        started = [asyncio.Event() for _ in plan]
        failed = [asyncio.Event() for _ in plan]
        tasks: list[asyncio.Task[None]] = []

        async def one(i: int, addr: str, delay: float, budget: float) -> None:
            if i:
                await started[i - 1].wait()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await failed[i - 1].wait()
            started[i].set()
            try:
                await self.transport.connect(addr, timeout=budget)
            except NetError as exc:
                errors.append(str(exc))
                failed[i].set()
                return
            won.set()
            for t in tasks:
                if t is not asyncio.current_task():
                    t.cancel()

        try:
            async with asyncio.timeout(timeout):
                async with asyncio.TaskGroup() as tg:
                    tasks += [tg.create_task(one(i, *step)) for i, step in enumerate(plan)]
        except TimeoutError:
            if not won.is_set():
                errors.append(f"dials timed out after {timeout:g} s ({', '.join(a for a, _d, _b in plan)})")
        return won.is_set()

    async def _attempt(self, act: Assign, task_id: str, req: TaskRequest, expires: int) -> _Answer:
        snap = self.snapshots.latest(task_id)
        if snap is None:
            spec = self._spec(task_id, req, expires, act.attempt, act.peer)
            protocol, sealed = TASK_PROTOCOL, wire.seal(self.signer, spec)
            body = wire.to_bytes(spec)  # what the envelope signs, hence what the receipt's spec hash names
            if POLICY_CHECKPOINT_MS in spec.policy:
                self.snapshots.expect(task_id, act.peer, sealed, spec.limits.memory_mb)
        else:  # its executor died after a checkpoint: the next one resumes from the latest snapshot
            env0, spec, sealed = self.snapshots.resume_request(snap)
            protocol, body = MIGRATE_PROTOCOL, env0.body
            self.snapshots.expect(task_id, act.peer, snap.state.spec, spec.limits.memory_mb)
        timeout = max(0.05, (act.deadline_ms - self._mono()) / 1000.0)
        self._pending[act.peer] += 1
        try:
            await self._ensure_connected(act.peer, timeout)
            if self.guard is not None:
                await self.guard.require(act.peer)
            t0 = self.clock.monotonic_ms()
            resp = await self.transport.request(act.peer, protocol, sealed, timeout=timeout)
            self.rtt.observe(act.peer, self.clock.monotonic_ms() - t0)
        except Unreachable as exc:
            return _Answer(act.peer, None, Reason.UNREACHABLE, str(exc))
        except RequestTimeout as exc:
            return _Answer(act.peer, None, Reason.SILENT, str(exc))
        except NetError as exc:
            return _Answer(act.peer, None, Reason.NET_FAILED, f"{type(exc).__name__}: {exc}")
        except Refused as exc:
            return _Answer(act.peer, None, Reason.FORBIDDEN, f"executor {exc}")
        finally:
            self._pending[act.peer] -= 1
        try:
            env = wire.open_envelope(resp)
        except RemoteError as exc:
            return _Answer(act.peer, None, Reason.INVALID_RECEIPT, str(exc))
        msg = env.message
        if env.author_id == act.peer and isinstance(msg, Busy | Rejected):
            return _Answer(act.peer, None, msg.reason, msg.detail)
        try:
            if env.author_id == act.peer and isinstance(msg, Handover):  # the task moved and finished there
                verified = verify_handover(msg, act.peer, spec, body, self._decrypter(msg.executor))
            else:
                verified = verify_opened_receipt(env, resp, act.peer, spec, body, self._decrypter(act.peer))
            if self.guard is not None:
                check_grant(spec, verified.receipt.grants)
            return _Answer(act.peer, verified)
        except (InvalidReceipt, Refused) as exc:
            if self.guard is not None:
                self.guard.offence(act.peer, "forged_receipt", resp)
            return _Answer(act.peer, None, Reason.INVALID_RECEIPT, str(exc))

    async def _ask_market(self, task_id: str, req: TaskRequest, requires: tuple[str, ...], expires: int) -> list[str]:
        now = self.clock.now_ms()
        window = min(self.offer_window_ms, max(1, (expires - now) // 2))
        offer = Offer(task_id, req.kind, req.module, requires, req.deadline_ms, now + window,
                      tuple(self.transport.listen_addrs))
        book = OfferBook(offer)
        self._bids[task_id] = book
        try:
            await self.transport.publish(WORK_TOPIC, wire.seal(self.signer, offer))
            await asyncio.sleep(window / 1000.0)
            ranked = book.ranked(req.sla, now)
        finally:
            self._bids.pop(task_id, None)
        if not ranked:
            raise NoExecutor(
                f"no node can take the task (needs {list(requires)}): offer unanswered, no bid within {window} ms"
            )
        return [b.bidder for b in ranked]

    # -- status ---------------------------------------------------------------------
    async def status(self) -> list[Advert]:
        """Every live advert known, refreshed from the connected peers."""
        return await self.refresh()


