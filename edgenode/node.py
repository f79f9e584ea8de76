"""The node: composes identity, ledger, sandbox, inference, network and scheduler.

The transport is injected, so the same :class:`Node` runs over real libp2p
(``edgenode run``) and over the in-process network (tests, the simulator).
Lifecycle: ``await node.start()`` ... ``await node.stop()``; stop stops admitting,
answers "busy" to queued work, finishes (or hands back) running work within the drain
budget, flushes the ledger writer, leaves the network and closes the store.  A node is
normally built and owned by :func:`edgenode.runtime.build_runtime`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from ledger import (
    ChainError,
    ChainPull,
    LedgerError,
    LedgerStore,
    WitnessTable,
    read_range,
    stored_bytes,
)

from . import wire
from ._announce import BlobAnnouncer
from ._blobs import ModelFiles, ServedBlobs, served_blob_handler
from ._node_moves import NodeMoves
from ._version import __version__
from .config import NodeConfig
from .errors import EdgenodeError, RemoteError
from .identity import Identity, public_key_from_peer_id
from .metrics import NodeMetrics
from .net import BLOB_PROTOCOL, GossipMessage, NetError, Transport, follow_gossip
from .power import parse_condition, watch_power
from .protocol import (
    ADVERT_TOPIC,
    BID_TOPIC,
    HEAD_TOPIC,
    LEDGER_PROTOCOL,
    STATUS_PROTOCOL,
    TASK_PROTOCOL,
    WORK_TOPIC,
    Advert,
    LedgerEntries,
    LedgerHead,
    LedgerRange,
    Offer,
    StatusReply,
    StatusRequest,
)
from .scheduler import Admission, AdvertTable, make_bid
from .security import SwarmGuard
from .tasks import (
    MIGRATE_PROTOCOL,
    MOVE_PROTOCOL,
    AdmissionHook,
    ChainWriter,
    Clock,
    DrainReport,
    Executor,
    InferEngine,
    ReplayStore,
    SystemClock,
    WasmEngine,
)
from .tasksets import Spawner, TaskSet

__all__ = ["Node", "NodeTiming"]

log = logging.getLogger("edgenode.node")

_MAX_SYNC_BATCH = 512
"""Most entries in one range answer (and asked for in one request)."""


class NodeTiming:
    """How often the node refreshes what it gossips (seconds)."""

    def __init__(
        self,
        advert_s: float = 10.0,
        head_s: float = 2.0,
        drain_s: float = 10.0,
        witness: int = 3,
        advert_min_s: float = 1.0,
        announce_s: float = 1.0,
    ) -> None:
        self.advert_s = advert_s
        """An unchanged advert is republished this often (receivers keep one for 15 s)."""
        self.advert_min_s = min(advert_min_s, advert_s)
        """A changed advert (addresses, capabilities, slots, load class) goes out at once, but at
        most this often."""
        self.head_s = head_s
        """Ledger head announcement period (only when the head moved)."""
        self.drain_s = drain_s
        """How long stop() waits for tasks in flight."""
        self.witness = witness
        """How many peers' chains this node replicates (slots: a silent witness's goes to a new
        announcer, see ``[ledger]``); every chain then has about this many replicas, and the
        cost per task stays bounded."""
        self.announce_s = announce_s
        """Least time between two blob announcements (a DHT peer takes 10 a 10 s from one node)."""


class Node(NodeMoves):
    """One peer of the swarm (its moving-task half: :class:`~edgenode._node_moves.NodeMoves`)."""

    def __init__(
        self,
        identity: Identity,
        config: NodeConfig,
        transport: Transport,
        store: LedgerStore,
        sandbox: WasmEngine | None = None,
        registry: InferEngine | None = None,
        clock: Clock | None = None,
        *,
        hook: AdmissionHook | None = None,
        timing: NodeTiming | None = None,
        metrics: NodeMetrics | None = None,
        replicate: bool = True,
        guard: SwarmGuard | None = None,
        replay_store: ReplayStore | None = None,
        spawn: Spawner | None = None,
        models: ModelFiles | None = None,
    ) -> None:
        self.identity = identity
        self.config = config
        self.transport = transport
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.timing = timing or NodeTiming()
        self.metrics = metrics or NodeMetrics()
        self.replicate = replicate
        self.blobs: ServedBlobs = ServedBlobs(config.net.keep_blobs_mb << 20, models)
        """What this node serves on the blob protocol: snapshots in flight, modules it fetched, and
        the models of ``models`` (shared ones: ``[net] share_models``)."""
        self.announcer = BlobAnnouncer(transport, interval=self.timing.announce_s, enabled=config.net.announce_blobs)
        """Announces the kept modules and shared models through content routing (the DHT)."""
        self.adverts = AdvertTable(max_entries=config.tables.adverts)
        self.chain = ChainWriter(store, identity, self.clock)
        self.admission = Admission(config.node.slots, config.node.queue, max_peers=config.tables.peers)
        self.guard = guard
        """Swarm mode (None: open mode, anyone may connect, gossip and submit)."""
        if guard is not None and guard.on_refused is None:
            guard.on_refused = lambda why: self.metrics.security.labels(reason=why).inc()
        self.executor = Executor(
            identity, transport, self.chain, self.clock, self.admission,
            wasm=sandbox, infer=registry, hook=hook, on_done=self.metrics.task_done,
            on_refused=lambda why: self.metrics.refused.labels(reason=why).inc(), guard=guard,
            tables=config.tables, replay_store=replay_store, ledger=config.ledger, migrate=self.migrate_task,
            ship=self.ship_snapshot, keep=self.keep_blob,
        )
        self._seq = 0
        self._spawner = spawn
        """Where background tasks start (None: loose tasks on the running loop, tracked here)."""
        self._tasks = TaskSet(spawn, log=log)
        """Periodic loops, topic followers, ledger syncs (in the runtime's task group when given)."""
        """Background work in flight (finished ones leave the set)."""
        self._syncing: set[str] = set()
        led = config.ledger
        self.witnesses = WitnessTable(self.timing.witness, led.witness_max_bytes, led.witness_idle_s)
        """Whose chains this node replicates: slots rotate by last head, a byte budget each."""
        self.ledger_refusals: Counter[str] = Counter()
        """Ledger work refused or cut, by reason: ``witness_slots``, ``witness_budget``, ``range_cut``."""
        self._announced = -1
        self._advert_sent_key: tuple[object, ...] = ()
        self._advert_sent_at = float("-inf")
        self.running = False
        """True from :meth:`start` until :meth:`stop` (or :meth:`stop_admitting`) begins."""
        self._phase = "new"
        self.drained: DrainReport | None = None
        """What the last :meth:`stop` did with the tasks in flight."""
        self.stop_requested = asyncio.Event()
        """Set by :meth:`request_drain`: whoever runs the node stops it now (``Runtime.wait`` returns)."""
        self._draining = False

    # -- lifecycle ------------------------------------------------------------------
    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    async def start(self, bootstrap: Sequence[str] = ()) -> None:
        """Start the transport, serve the protocols, follow the topics, dial ``bootstrap``."""
        self._phase = "starting"
        await self.transport.start()
        await self.chain.head()
        t = self.transport
        g = self.guard
        t.serve(BLOB_PROTOCOL, served_blob_handler(self.blobs))
        t.serve(TASK_PROTOCOL, self.executor.handle)
        t.serve(MIGRATE_PROTOCOL, self.executor.handle_migrate)
        t.serve(MOVE_PROTOCOL, self._handle_order)
        t.serve(STATUS_PROTOCOL, self._handle_status)
        t.serve(LEDGER_PROTOCOL, self._handle_ledger)
        if g is not None:
            await g.start(t, self._spawner)
            t.serve(BLOB_PROTOCOL, g.guard_handler("blob", served_blob_handler(self.blobs)))
            t.serve(STATUS_PROTOCOL, g.guard_handler("request", self._handle_status))
            t.serve(LEDGER_PROTOCOL, g.guard_handler("request", self._handle_ledger))
            t.serve(MIGRATE_PROTOCOL, g.guard_handler("request", self.executor.handle_migrate))
        for topic, fn in ((ADVERT_TOPIC, self._on_advert), (WORK_TOPIC, self._on_offer), (HEAD_TOPIC, self._on_head)):
            t.set_validator(topic, _author_is_sender if g is None else g.gate(_author_is_sender))
            self._spawn(follow_gossip(t.subscribe(topic), _tolerant(fn), log))
        self.running = True
        self._phase = "running"
        for addr in bootstrap:
            try:
                await t.connect(addr)
            except NetError as exc:
                log.warning("bootstrap failed", extra={"addr": addr, "error": str(exc)})
        if g is not None:
            await g.spread_revocations()
        if self.announcer.start(self.blobs.announced()):  # after the bootstrap dials: someone takes the records
            self._spawn(self.announcer.run())
        self._spawn(self._every(self.timing.advert_min_s, self._advertise))
        self._spawn(self._every(self.timing.head_s, self.announce_head))
        nsec = self.config.node
        if nsec.drain_when:
            conditions = [parse_condition(c) for c in nsec.drain_when]
            self._spawn(watch_power(conditions, Path(nsec.sysfs), nsec.drain_poll_s, self.request_drain))
        if self.config.node.metrics_port:
            self.metrics.serve(self.config.node.metrics_port)
        log.info("node started", extra={"peer_id": self.peer_id, "addrs": t.listen_addrs})

    def stop_admitting(self) -> None:
        """First step of a stop: new tasks are answered busy, offers are not bid on."""
        self.running = False
        self.executor.closing = True

    async def stop(self, close_store: bool = True) -> DrainReport | None:
        """Stop, in this order: stop admitting; answer the queued tasks busy; finish the running ones
        within ``timing.drain_s`` and hand back (busy) the rest; flush and close the ledger writer;
        announce the final head; end the background tasks; leave the network; close the stores.

        Every task admitted before gets an answer (a receipt whose entry is durable, or ``Busy``).
        Returns what the drain did (None when the node was not started or is already stopped).
        """
        if self._phase in ("new", "stopping", "stopped"):
            return None
        self._phase = "stopping"
        self.stop_admitting()
        report = self.drained = await self.executor.drain(self.timing.drain_s)
        await self.chain.close()
        with contextlib.suppress(EdgenodeError, LedgerError):
            await self.announce_head()
        await self._cancel_background()
        if self.guard is not None:
            await self.guard.stop()
        with contextlib.suppress(NetError):
            await self.transport.stop()
        self.metrics.close()
        if close_store:
            await self.executor.close()
            await self.store.close()
        self._phase = "stopped"
        log.info("node stopped", extra={"peer_id": self.peer_id, "ledger_height": self.chain.height,
                                        "unqueued": report.unqueued, "handed_back": report.handed_back})
        return report

    async def _cancel_background(self) -> None:
        await self._tasks.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(coro)

    @property
    def background_tasks(self) -> int:
        """Background tasks in flight (periodic loops, topic followers, ledger syncs)."""
        return len(self._tasks)

    async def _every(self, period: float, fn: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await fn()
            except NetError as exc:
                log.debug("periodic step failed", extra={"error": str(exc)})
            except (EdgenodeError, LedgerError) as exc:  # e.g. the store failed: keep the loop, say so
                log.warning("periodic step failed", extra={"error": str(exc)})
            await asyncio.sleep(period)

    # -- served blobs ---------------------------------------------------------------
    def keep_blob(self, data: bytes) -> None:
        """Keep ``data`` (a module this node fetched) to serve it, and announce it (in the background)."""
        digest = self.blobs.keep(data)
        if digest is not None:
            self.announcer.offer(digest)

    def model_added(self, model_hash: str) -> None:
        """A model entered the registry (FL hot swap): announce it when models are shared."""
        if self.blobs.models is not None:
            self.announcer.offer(model_hash)

    # -- adverts --------------------------------------------------------------------
    def advert(self) -> Advert:
        """This node's current advert."""
        self._seq += 1
        return Advert(
            peer_id=self.peer_id,
            addrs=tuple(self.transport.listen_addrs),
            capabilities=tuple(self.executor.capabilities()),
            slots=self.admission.slots,
            free_slots=self.admission.free_slots,
            queue_len=self.admission.queue_len,
            queue_cap=self.admission.queue_cap,
            cost_class=self.config.node.cost_class,
            version=__version__,
            seq=self._seq,
            issued_ms=self.clock.now_ms(),
        )

    def _advert_key(self) -> tuple[object, ...]:
        """What peers place work by, coarsely: a change publishes the advert before its refresh."""
        a = self.admission
        load = 2 if a.queue_len >= a.queue_cap else 1 if 2 * a.queue_len >= a.queue_cap else 0
        return (tuple(self.transport.listen_addrs), tuple(self.executor.capabilities()), a.slots, a.queue_cap, load)

    async def _advertise(self) -> None:
        """Publish the advert when its key changed, or when the last one is ``advert_s`` old."""
        key, now = self._advert_key(), asyncio.get_running_loop().time()
        if key != self._advert_sent_key or now - self._advert_sent_at >= self.timing.advert_s:
            self._advert_sent_key, self._advert_sent_at = key, now
            await self.publish_advert()

    async def publish_advert(self) -> None:
        self.adverts.expire(self.clock.now_ms())
        self._refresh_gauges()
        await self.transport.publish(ADVERT_TOPIC, wire.seal(self.identity, self.advert()))
        if self.guard is not None:
            await self.guard.announce()

    def _refresh_gauges(self) -> None:
        m = self.metrics
        m.queue.set(self.admission.queue_len)
        m.running.set(self.admission.running)
        m.peers.set(len(self.transport.peers()))
        m.adverts.set(len(self.adverts))
        m.ledger_height.set(self.chain.height)
        m.set_transport_counters(self.transport.counters)

    async def _on_advert(self, msg: GossipMessage) -> None:
        env, adv = wire.open_as(Advert, msg.data)
        if env.author_id == adv.peer_id == msg.sender:
            self.adverts.update(adv, msg.data, self.clock.now_ms())

    async def _handle_status(self, sender: str, data: bytes) -> bytes:
        wire.open_as(StatusRequest, data)
        now = self.clock.now_ms()
        reply = StatusReply(self.advert(), tuple(self.adverts.sealed(now)), self.chain.height)
        return wire.seal(self.identity, reply)

    # -- contract net ---------------------------------------------------------------
    async def _on_offer(self, msg: GossipMessage) -> None:
        _env, offer = wire.open_as(Offer, msg.data)
        if not self.running or self.executor.closing:
            return
        bid = make_bid(offer, self.advert(), self.clock.now_ms())
        if bid is not None:
            await self.transport.publish(BID_TOPIC, wire.seal(self.identity, bid))

    # -- ledger heads and replication -----------------------------------------------
    async def announce_head(self) -> None:
        head = await self.chain.head()
        if head is None or head.seq == self._announced:
            return
        self._announced = head.seq
        self._refresh_gauges()
        await self.transport.publish(HEAD_TOPIC, wire.seal(self.identity, LedgerHead(head.seq, head.hash.hex())))

    @property
    def witnessed(self) -> set[str]:
        """Peers whose chains this node replicates now."""
        return self.witnesses.peers

    async def _on_head(self, msg: GossipMessage) -> None:
        _env, head = wire.open_as(LedgerHead, msg.data)
        if not self.replicate or msg.sender in self._syncing or msg.sender == self.peer_id:
            return
        why = self.witnesses.offer(msg.sender, asyncio.get_running_loop().time())
        if why is not None:
            self.ledger_refusals[f"witness_{why}"] += 1
            return
        self._syncing.add(msg.sender)
        self._spawn(self.sync_quietly(msg.sender, head.height))

    async def sync_quietly(self, peer: str, height: int) -> None:
        """:meth:`sync_from` as a head announcement runs it: failures are logged, not raised.

        A fork (``ChainError(reason="fork")``) is reported to the guard as an ``equivocation``
        offence with its kept proof as evidence.
        """
        try:
            await self.sync_from(peer, height)
        except ChainError as exc:
            log.warning("bad chain from peer", extra={"peer": peer, "reason": exc.reason, "seq": exc.seq})
            if self.guard is not None and exc.reason == "fork":
                proofs = [p for p in await self.store.forks() if p.author == exc.author and p.seq == exc.seq]
                self.guard.offence(peer, "equivocation", proofs[0].to_bytes() if proofs else b"")
        except (LedgerError, EdgenodeError) as exc:
            log.debug("ledger sync failed", extra={"peer": peer, "error": str(exc)})
        finally:
            self._syncing.discard(peer)

    async def sync_from(self, peer: str, height: int | None = None) -> int:
        """Fetch ``peer``'s chain (up to ``height``) into the store; return how many entries were new.

        The decisions are :class:`ledger.ChainPull`'s (which range next, what to store, when to
        stop); this method moves the bytes and calls the store.  The store checks every link; a
        validly signed second entry at a stored seq is an equivocation: the proof is kept,
        counted, and ``ChainError(reason="fork")`` raised.  Batches may be cut by the peer's byte
        budget: the next range follows until ``height`` (or an empty answer).  A witnessed peer's
        chain stops at ``[ledger] witness_max_bytes``: what fits is kept, the peer loses its slot
        and is counted (``witness_budget``).  A gap, another author's or undecodable entries, or
        an answer with nothing new is a :class:`RemoteError`.
        """
        author = public_key_from_peer_id(peer)
        have = await self.store.head(author)
        held = 0 if have is None else have.seq
        budget = self.witnesses if peer in self.witnesses else None
        if budget is not None and not budget.known(peer):
            budget.seed(peer, await stored_bytes(self.store, author, held, budget.budget_bytes))
        pull = ChainPull(author, held, height, max_batch=_MAX_SYNC_BATCH, witness=budget, peer=peer)
        added = 0
        while (rng := pull.next_range()) is not None:
            req = wire.seal(self.identity, LedgerRange(rng.start, rng.end - rng.start + 1))
            resp = await self.transport.request(peer, LEDGER_PROTOCOL, req, timeout=10.0)
            env, batch = wire.open_as(LedgerEntries, resp)
            if env.author != author:
                raise RemoteError(f"{peer} answered a ledger range with someone else's signature")
            step = pull.on_answer(batch.entries)
            try:
                added += await self.store.append_many(list(step.store)) if step.store else 0
            except ChainError as exc:
                if exc.reason == "fork":
                    self.metrics.forks.inc()
                raise
            pull.stored(step)
            if step.error is not None:
                raise RemoteError(f"{peer} {step.error}")
            if step.over_budget:
                self.ledger_refusals["witness_budget"] += 1
                log.info("witnessed chain over budget", extra={"peer": peer, "bytes": self.witnesses.budget_bytes})
        self.metrics.replicated.set(max(0, len(await self.store.authors()) - 1))
        return added

    async def _handle_ledger(self, sender: str, data: bytes) -> bytes:
        """Answer a range of this node's chain (:func:`ledger.read_range`): at most
        ``_MAX_SYNC_BATCH`` entries and ``[ledger] range_max_bytes`` bytes, but always at least
        one entry (the asker goes on)."""
        _env, rng = wire.open_as(LedgerRange, data)
        answer = await read_range(self.store, self.identity.public_key, rng.start, rng.limit,
                                  max_entries=_MAX_SYNC_BATCH, max_bytes=self.config.ledger.range_max_bytes)
        if answer.cut:
            self.ledger_refusals["range_cut"] += 1
        return wire.seal(self.identity, LedgerEntries(tuple(e.to_bytes() for e in answer.entries)))

    def status_line(self) -> dict[str, object]:
        """A JSON-able summary (for logs and tests)."""
        return {
            "peer_id": self.peer_id,
            "peers": len(self.transport.peers()),
            "adverts": len(self.adverts),
            "ledger_height": self.chain.height,
            "executor": dict(self.executor.counts),
        }


def _tolerant(fn: Callable[[GossipMessage], Awaitable[None]]) -> Callable[[GossipMessage], Awaitable[None]]:
    """A gossip handler whose local failures (a publish that fails, a store that stops) drop the
    message and keep the topic followed; peer faults (RemoteError) go on to :func:`follow_gossip`."""

    async def handle(msg: GossipMessage) -> None:
        try:
            await fn(msg)
        except RemoteError:
            raise
        except (EdgenodeError, LedgerError) as exc:
            log.debug("gossip handling failed", extra={"sender": msg.sender, "error": str(exc)})

    return handle


def _author_is_sender(sender: str, data: bytes) -> bool:
    """Gossip validator: the envelope must open and be signed by the message's origin."""
    try:
        env = wire.open_envelope(data)
        return env.author == public_key_from_peer_id(sender)
    except EdgenodeError:
        return False

