"""Feeding the dashboard from a live swarm: inside a node, or as the dashboard's own light peer.

:class:`SwarmSource` only listens and asks; it changes nothing in the swarm.  It follows the
advert, ledger-head and FL-progress topics, asks its connected peers for the adverts they hold
(the status protocol ``edgenode status`` uses), reads the tail of each chain whose head moved
(the ledger protocol: at most ``tail`` entries, signatures and links checked), and turns every
``task_result`` entry into a task row (executor, status, when it was recorded).  Inside a node
it also reads the node itself: its advert, its own chain as it grows, the latency of the tasks
it runs, its refusals, offences and bans.

What a peer cannot see it does not show: the links drawn are the observer's own connections
(no protocol tells who else is connected to whom), and a task's latency is known only where it
ran (a node's own tasks, from admission to receipt); a light peer sees when results were
recorded, not when they were asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ledger import ChainError, Entry, LedgerError, verify_entry, verify_extension

from .. import wire
from .._version import __version__
from ..errors import EdgenodeError, RemoteError
from ..identity import public_key_from_peer_id
from ..net import GossipMessage, NetError, PeerEventKind, Transport, follow_gossip
from ..protocol import (
    ADVERT_TOPIC,
    HEAD_TOPIC,
    LEDGER_PROTOCOL,
    RESULT_KIND,
    Advert,
    LedgerEntries,
    LedgerHead,
    LedgerRange,
    TaskRecord,
)
from ..tasks import ask_status
from ..wire import Signer
from ._feed import Feed, TaskRow

if TYPE_CHECKING:
    from ..node import Node
    from ..security import SwarmGuard

__all__ = ["SwarmSource", "counter_by_label", "counter_total"]

log = logging.getLogger("edgenode.dashboard")

FL_PROGRESS_TOPIC = "edgenode/fl-progress/1"
"""Where FL nodes report their rounds (``edgenode.fl.FL_PROGRESS_TOPIC``; named here so that a
dashboard does not import the FL stack)."""
ADVERT_TTL_S = 15.0
"""A node whose advert was not refreshed for this long is shown down."""


def counter_by_label(counter: Any, label: str) -> dict[str, int]:
    """A labelled prometheus counter's totals by one label's value."""
    out: Counter[str] = Counter()
    for metric in counter.collect():
        for s in metric.samples:
            if s.name.endswith("_total") and label in s.labels:
                out[s.labels[label]] += int(s.value)
    return dict(out)


def counter_total(counter: Any) -> int:
    """A prometheus counter's total over all its labels."""
    return sum(int(s.value) for m in counter.collect() for s in m.samples if s.name.endswith("_total"))


def _author_is_sender(sender: str, data: bytes) -> bool:
    try:
        return wire.open_envelope(data).author == public_key_from_peer_id(sender)
    except EdgenodeError:
        return False


class SwarmSource:
    """Reads a swarm into ``feed``; ``node`` when it runs inside one (else a light peer on ``transport``)."""

    def __init__(self, feed: Feed, transport: Transport, signer: Signer, *, node: Node | None = None,
                 guard: SwarmGuard | None = None, poll_s: float = 1.0, tail: int = 32,
                 wall_ms: Callable[[], int] | None = None, monotonic: Callable[[], float] | None = None) -> None:
        self.feed = feed
        self.transport = transport
        self.signer = signer
        self.node = node
        self.guard = guard if guard is not None else (node.guard if node is not None else None)
        self.poll_s = poll_s
        self.tail = tail
        self._wall_ms = wall_ms or (lambda: int(time.time() * 1000))
        self._mono = monotonic or time.monotonic
        self._t0 = self._mono()
        self.me = transport.peer_id
        feed.observer = self.me
        self._tasks: set[asyncio.Task[None]] = set()
        self._advert_seen: dict[str, float] = {}
        self._addrs: dict[str, tuple[str, ...]] = {}
        self._heads: dict[str, int] = {}
        """Height each chain announced last."""
        self._held: dict[str, Entry] = {}
        """The last entry read of each chain."""
        self._seen: dict[str, dict[int, bytes]] = {}
        """Recent entry hashes per chain (seq -> hash), to notice a second entry at a seq (a fork)."""
        self._read: dict[str, int] = {}
        """Entries of each chain read (the page's "held")."""
        self._fetching: set[str] = set()
        self._forks = 0
        self._store_forks = 0
        self._offences_seen = 0
        self._fl_reports: dict[tuple[str, int], dict[int, tuple[float, float, int]]] = {}
        self._latencies: dict[tuple[str, str], deque[float]] = {}
        self._own_kick = asyncio.Event()
        self._inner: Callable[[str, str, float], None] | None = None
        self._hook: Callable[[str, str, float], None] | None = None
        self.cpu_s = 0.0
        """Thread CPU time spent in this source's own steps (the benchmark reads it)."""

    def t(self) -> float:
        return self._mono() - self._t0

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        t = self.transport
        self.feed.see_node(self.me)
        if self.node is None:
            for topic in (ADVERT_TOPIC, HEAD_TOPIC, FL_PROGRESS_TOPIC):
                g = self.guard
                t.set_validator(topic, _author_is_sender if g is None else g.gate(_author_is_sender))
        self._spawn(follow_gossip(t.subscribe(ADVERT_TOPIC), self._timed(self._on_advert), log, "dashboard"))
        self._spawn(follow_gossip(t.subscribe(HEAD_TOPIC), self._timed(self._on_head), log, "dashboard"))
        self._spawn(follow_gossip(t.subscribe(FL_PROGRESS_TOPIC), self._timed(self._on_fl), log, "dashboard"))
        self._spawn(self._peer_events())
        if self.node is not None:
            self._hook_node(self.node)
            self._spawn(self._own_chain())
        self._spawn(self._every())
        self._spawn(self.refresh())

    async def stop(self) -> None:
        if self.node is not None and self._hook is not None and self.node.executor.on_done is self._hook:
            self.node.executor.on_done = self._inner
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _timed(self, fn: Callable[[GossipMessage], None]) -> Callable[[GossipMessage], Coroutine[Any, Any, None]]:
        async def handle(msg: GossipMessage) -> None:
            c0 = time.thread_time()
            try:
                fn(msg)
            finally:
                self.cpu_s += time.thread_time() - c0

        return handle

    async def _every(self) -> None:
        while True:
            c0 = time.thread_time()
            try:
                await self.poll()
            except (EdgenodeError, LedgerError) as exc:
                log.debug("dashboard poll failed", extra={"error": str(exc)})
            self.cpu_s += time.thread_time() - c0
            await asyncio.sleep(self.poll_s)

    # -- what the observer is connected to ---------------------------------------------------------
    async def _peer_events(self) -> None:
        async for ev in self.transport.peer_events():
            if ev.kind is PeerEventKind.JOIN and ev.peer not in self.feed.nodes and self.node is None:
                self._spawn(self.refresh([ev.peer]))
            self._links()

    def _links(self) -> None:
        known = self.feed.nodes
        self.feed.set_links((self.me, p) for p in self.transport.peers() if p in known)

    async def refresh(self, peers: list[str] | None = None) -> None:
        """Ask ``peers`` (default: all connected) for their advert and the adverts they hold."""
        targets = list(peers if peers is not None else self.transport.peers())
        answers = await ask_status(self.transport, self.signer, targets, 5.0)
        c0 = time.thread_time()
        for st in answers:
            peer, reply = st.peer, st.reply
            self._advert(reply.advert)
            self._note_height(peer, reply.ledger_height)
            for sealed in reply.known:
                with contextlib.suppress(RemoteError):
                    env2, adv = wire.open_as(Advert, sealed)
                    if env2.author_id == adv.peer_id:
                        self._advert(adv)
        self._links()
        self.cpu_s += time.thread_time() - c0

    # -- adverts ----------------------------------------------------------------------------------
    def _on_advert(self, msg: GossipMessage) -> None:
        env, adv = wire.open_as(Advert, msg.data)
        if env.author_id == adv.peer_id == msg.sender:
            self._advert(adv)

    def _advert(self, a: Advert) -> None:
        if a.peer_id == self.me and self.node is None:
            return
        self._advert_seen[a.peer_id] = self._mono()
        self._addrs[a.peer_id] = a.addrs
        f = self.feed
        new = a.peer_id not in f.nodes
        f.set_advert(a.peer_id, addrs=a.addrs, capabilities=a.capabilities, slots=a.slots, free_slots=a.free_slots,
                     queue_len=a.queue_len, queue_cap=a.queue_cap, cost_class=a.cost_class, version=a.version,
                     issued_ms=a.issued_ms)
        if f.nodes[a.peer_id]["state"] == "down":
            f.set_state(a.peer_id, "up")
        if new:
            self._links()

    # -- ledgers ----------------------------------------------------------------------------------
    def _on_head(self, msg: GossipMessage) -> None:
        _env, head = wire.open_as(LedgerHead, msg.data)
        if msg.sender != self.me:
            self._note_height(msg.sender, head.height)

    def _note_height(self, peer: str, height: int) -> None:
        if peer == self.me:
            return
        self.feed.see_node(peer)
        if height > self._heads.get(peer, 0):
            self._heads[peer] = height
            led = self.feed.nodes[peer].get("ledger") or {}
            self.feed.set_ledger(peer, height, led.get("verified"), led.get("detail", ""), led.get("held"))
            if peer not in self._fetching:
                self._fetching.add(peer)
                self._spawn(self._fetch_tail(peer))

    async def _fetch_tail(self, peer: str) -> None:
        try:
            while True:
                height = self._heads.get(peer, 0)
                held = self._held[peer].seq if peer in self._held else 0
                if height <= held:
                    return
                start = max(held + 1, height - self.tail + 1)
                await self._ensure_connected(peer)
                req = wire.seal(self.signer, LedgerRange(start, height - start + 1))
                resp = await self.transport.request(peer, LEDGER_PROTOCOL, req, timeout=10.0)
                c0 = time.thread_time()
                try:
                    env, batch = wire.open_as(LedgerEntries, resp)
                    if env.author_id != peer:
                        raise RemoteError(f"{peer} answered a ledger range with someone else's signature")
                    entries = [Entry.from_bytes(b) for b in batch.entries]
                    if not entries:
                        return
                    self._take_entries(peer, entries)
                finally:
                    self.cpu_s += time.thread_time() - c0
        except (NetError, RemoteError, LedgerError, EdgenodeError) as exc:
            log.debug("dashboard ledger read failed", extra={"peer": peer, "error": str(exc)})
        finally:
            self._fetching.discard(peer)

    async def _ensure_connected(self, peer: str) -> None:
        if peer in self.transport.peers():
            return
        for addr in self._addrs.get(peer, ()):
            full = addr if "/p2p/" in addr else f"{addr}/p2p/{peer}"
            with contextlib.suppress(NetError):
                await self.transport.connect(full, timeout=5.0)
                return

    def _take_entries(self, peer: str, entries: list[Entry]) -> None:
        """Check a run of ``peer``'s chain (signatures, links, author) and list its task results."""
        author = public_key_from_peer_id(peer)
        verified, detail = True, ""
        prev = self._held.get(peer)
        try:
            if any(e.author != author for e in entries):
                raise ChainError(author, entries[0].seq, "bad_signature", "another author's entry")
            first = entries[0]
            verify_entry(first)
            if prev is not None and first.seq == prev.seq + 1:
                verify_extension(prev, entries)
            else:
                verify_extension(first, entries[1:])
        except ChainError as exc:
            verified, detail = False, f"{exc.reason} at seq {exc.seq}"
        seen = self._seen.setdefault(peer, {})
        for e in entries:
            old = seen.get(e.seq)
            if old is not None and old != e.hash and verified:
                self._forks += 1  # two validly signed entries at one seq: an equivocation
                verified, detail = False, f"fork at seq {e.seq}"
            seen[e.seq] = e.hash
        while len(seen) > 4 * self.tail:
            del seen[min(seen)]
        self._held[peer] = entries[-1]
        self._read[peer] = self._read.get(peer, 0) + len(entries)
        self.feed.set_ledger(peer, max(self._heads.get(peer, 0), entries[-1].seq), verified, detail,
                             self._read[peer])
        self.feed.set_fork_proofs(self._forks + self._store_forks)
        if verified:
            for e in entries:
                self._row(peer, e, None)

    def _row(self, executor: str, e: Entry, latency_ms: float | None) -> None:
        if e.kind != RESULT_KIND or e.body is None:
            return
        try:
            rec = wire.from_bytes(TaskRecord, e.body)
        except EdgenodeError:
            return
        if latency_ms is None:
            q = self._latencies.get((rec.kind, rec.status)) if executor == self.me else None
            latency_ms = q.popleft() if q else None
        self.feed.on_task(TaskRow(rec.task_id, rec.kind, executor, rec.status, latency_ms, self.t(),
                                  e.timestamp_ms, submitter=rec.submitter))

    # -- inside a node ------------------------------------------------------------------------------
    def _hook_node(self, node: Node) -> None:
        """Learn the latency of each task the node runs (its executor's ``on_done``; chained)."""
        ex = node.executor
        inner = ex.on_done

        def on_done(kind: str, status: str, ms: float) -> None:
            if inner is not None:
                inner(kind, status, ms)
            q = self._latencies.setdefault((kind, status), deque(maxlen=256))
            q.append(ms)
            self._own_kick.set()

        self._inner, self._hook = inner, on_done
        ex.on_done = on_done

    async def _own_chain(self) -> None:
        """Rows for the node's own results as they are recorded (its executor tells when)."""
        node = self.node
        assert node is not None
        me = node.identity.public_key
        held = node.chain.height  # what was recorded before the dashboard started is history
        while True:
            await self._own_kick.wait()
            self._own_kick.clear()
            height = node.chain.height
            while held < height:
                got = await node.store.range(me, held + 1, min(height, held + 64))
                if not got:
                    break
                c0 = time.thread_time()
                for e in got:
                    self._row(self.me, e, None)
                held = got[-1].seq
                self.cpu_s += time.thread_time() - c0

    # -- the rest, once a poll ------------------------------------------------------------------------
    async def poll(self) -> None:
        f = self.feed
        f.tick(self.t(), "live")
        now = self._mono()
        for peer, seen in list(self._advert_seen.items()):
            if now - seen > ADVERT_TTL_S and peer in f.nodes and f.nodes[peer]["state"] == "up":
                f.set_state(peer, "down")
        g = self.guard
        refused: Counter[str] = Counter()
        node = self.node
        if node is not None:
            a = node.admission
            f.set_advert(self.me, addrs=self.transport.listen_addrs, capabilities=node.executor.capabilities(),
                         slots=a.slots, free_slots=a.free_slots, queue_len=a.queue_len, queue_cap=a.queue_cap,
                         cost_class=node.config.node.cost_class, version=__version__)
            f.set_ledger(self.me, node.chain.height, True, "", node.chain.height)
            refused.update(counter_by_label(node.metrics.refused, "reason"))
            refused.update(node.ledger_refusals)
            self._store_forks = len(await node.store.forks())
            f.set_fork_proofs(self._forks + self._store_forks)
            self._own_kick.set()
        if g is not None:
            refused.update(g.refusals)
            members = set(g.members())
            for peer in f.nodes:
                if peer != self.me:
                    f.set_member(peer, peer in members)
                else:
                    f.set_member(peer, True)
            t_now = g.abuse_time_s()
            for peer in g.abuse.banned(t_now):
                if peer in f.nodes:
                    f.set_state(peer, "banned")
            evidence = list(g.evidence)
            for ev in evidence[self._offences_seen:]:
                with contextlib.suppress(EdgenodeError, ValueError):
                    from ..identity import peer_id_from_public_key

                    f.on_offence(peer_id_from_public_key(ev.offender), ev.offence, self.t(), banned=True)
            self._offences_seen = len(evidence)
        f.set_refusals(refused)
        self._links()

    # -- federated learning -------------------------------------------------------------------------
    def _on_fl(self, msg: GossipMessage) -> None:
        from ..fl import FLProgress

        env, p = wire.open_as(FLProgress, msg.data)
        if env.author_id != p.peer_id:
            return
        f = self.feed
        f.see_node(p.peer_id)
        f.set_fl(p.peer_id, p.round, p.accuracy, p.loss, p.updates, p.model_sha256)
        f.set_fl_run(p.run_id, model=p.model_sha256 or None, rounds=p.rounds)
        reports = self._fl_reports.setdefault((p.run_id, p.round), {})
        reports[hash(p.peer_id)] = (p.accuracy, p.loss, p.updates)
        n = len(reports)
        acc = sum(r[0] for r in reports.values()) / n
        loss = sum(r[1] for r in reports.values()) / n
        upd = sum(r[2] for r in reports.values()) / n
        f.on_fl_round(p.round, acc, loss, upd, self.t())
        if len(self._fl_reports) > 256:
            del self._fl_reports[next(iter(self._fl_reports))]
