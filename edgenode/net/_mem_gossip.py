"""The gossip layer of the in-memory network: link mechanics, mesh upkeep, forwarding.

:class:`GossipLayer` is the base of :class:`edgenode.net.memnet.MemNetwork`; it
holds the shared simulated state (links, scheduler, partitions) and routes gossip
like GossipSub: an eager push along a bounded mesh per topic, plus a lazy
IHAVE/IWANT exchange at each node's next heartbeat with a few non-mesh peers,
which repairs holes in the mesh.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from ..errors import LocalError
from ._mem_core import Delivery, LinkSpec, Scheduler, mix64, unit_draw
from ._mem_node import MemTransport
from ._transport import GossipMessage

__all__ = ["GossipLayer"]

# salts that separate the independent random draws of one message on one link
GOSSIP_LOSS, GOSSIP_JITTER, REQ_LOSS, REQ_JITTER, RESP_LOSS, RESP_JITTER = range(6)
IHAVE_LOSS, IHAVE_JITTER, IWANT_LOSS, IWANT_JITTER, LAZY_PICK, HEARTBEAT = range(6, 12)
CONTROL_BYTES = 64
"""Size of an IHAVE or IWANT control message on a bandwidth-limited link."""


class _Gossip:
    """One published message travelling through the mesh."""

    __slots__ = ("data", "key", "msg", "origin", "published_at", "seen", "seqno", "topic", "wanted")

    def __init__(self, key: int, seqno: int, origin: MemTransport, msg: GossipMessage, published_at: float) -> None:
        self.key = key
        self.seqno = seqno
        self.topic = msg.topic
        self.origin = origin
        self.data = msg.data
        self.msg = msg
        self.published_at = published_at
        self.seen: set[MemTransport] = {origin}
        self.wanted: set[MemTransport] = set()
        """Nodes that asked for it by IWANT (they ask once)."""


class GossipLayer:
    """Shared simulated state and the gossip router (see module docstring)."""

    def __init__(
        self,
        seed: int,
        default_link: LinkSpec | None,
        gossip_degree: int,
        gossip_degree_high: int | None,
        gossip_lazy: int | None,
        heartbeat_s: float,
    ) -> None:
        self._lazy: dict[MemTransport, list[tuple[_Gossip, int]]] = {}
        """Per node, the messages kept for its next heartbeat's IHAVE (a key only while one is pending)."""
        if gossip_degree < 1:
            raise LocalError("gossip_degree must be >= 1")
        high = 2 * gossip_degree if gossip_degree_high is None else gossip_degree_high
        if high < gossip_degree:
            raise LocalError("gossip_degree_high must be >= gossip_degree")
        lazy = gossip_degree if gossip_lazy is None else gossip_lazy
        if lazy < 0:
            raise LocalError("gossip_lazy must be >= 0")
        if not heartbeat_s > 0:
            raise LocalError("heartbeat_s must be > 0")
        self._seed_key = mix64(seed & ((1 << 64) - 1))
        self._rng = random.Random(seed)
        self._default = default_link if default_link is not None else LinkSpec()
        self._d = gossip_degree
        self._d_high = high
        self._d_lazy = lazy
        self._heartbeat = heartbeat_s
        self._pair_links: dict[tuple[int, int], LinkSpec] = {}
        self._class_links: dict[tuple[str, str], LinkSpec] = {}
        self._busy: dict[tuple[int, int], float] = {}
        self._groups: dict[str, int] | None = None
        self._sched: Scheduler | None = None
        self._observers: list[Callable[[Delivery], None]] = []

    @property
    def gossip_degree(self) -> tuple[int, int]:
        """(target, maximum) mesh degree per topic."""
        return self._d, self._d_high

    # -- time ----------------------------------------------------------------------
    def _scheduler(self) -> Scheduler:
        loop = asyncio.get_running_loop()
        if self._sched is None or self._sched.loop is not loop:
            self._sched = Scheduler(loop)
        return self._sched

    def now(self) -> float:
        """Simulated time in seconds (the loop's clock, or the running network event's time)."""
        return self._scheduler().now()

    def in_flight(self) -> int:
        """Network events (message hops, requests, responses, handshakes) not yet delivered."""
        return 0 if self._sched is None else self._sched.pending()

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until nothing is in flight (request handlers still running are not waited for).

        Raises TimeoutError if the network does not go quiet within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            await self._scheduler().wait_idle()

    def add_observer(self, fn: Callable[[Delivery], None]) -> None:
        """Call ``fn`` with a :class:`Delivery` for every gossip message delivered to a node."""
        self._observers.append(fn)

    def remove_observer(self, fn: Callable[[Delivery], None]) -> None:
        self._observers.remove(fn)

    # -- links ---------------------------------------------------------------------
    def _link(self, a: MemTransport, b: MemTransport) -> LinkSpec:
        if self._pair_links:
            i, j = a.index, b.index
            spec = self._pair_links.get((i, j) if i < j else (j, i))
            if spec is not None:
                return spec
        if self._class_links:
            ca, cb = a._class, b._class
            spec = self._class_links.get((ca, cb) if ca <= cb else (cb, ca))
            if spec is not None:
                return spec
        return self._default

    def _arrival(
        self, now: float, spec: LinkSpec, src: MemTransport, dst: MemTransport, size: int, key: int, salt: int
    ) -> float:
        """Simulated arrival time of ``size`` bytes sent at ``now`` from src to dst."""
        start = now
        if spec.bandwidth_bps is not None:
            k = (src.index, dst.index)
            start = max(start, self._busy.get(k, start)) + size * 8.0 / spec.bandwidth_bps
            self._busy[k] = start
        delay = spec.latency_ms
        if spec.jitter_ms:
            u = unit_draw(self._seed_key, key, (src.index << 32) | dst.index, salt)
            delay = max(0.0, delay + spec.jitter_ms * (2.0 * u - 1.0))
        return start + delay / 1000.0

    def _lost(self, spec: LinkSpec, src: MemTransport, dst: MemTransport, key: int, salt: int) -> bool:
        if spec.loss <= 0.0:
            return False
        return unit_draw(self._seed_key, key, (src.index << 32) | dst.index, salt) < spec.loss

    def _blocked(self, a: MemTransport, b: MemTransport) -> bool:
        groups = self._groups
        return groups is not None and groups.get(a.peer_id, -1) != groups.get(b.peer_id, -1)

    # -- mesh ------------------------------------------------------------------------
    def _prune_peer(self, node: MemTransport, gone: MemTransport) -> None:
        for fan in node.fanout.values():
            fan.pop(gone, None)
        refill = []
        for topic, mesh in node.mesh.items():
            if gone in mesh:
                del mesh[gone]
                refill.append(topic)
        if node.up:
            for topic in refill:
                self._graft_fill(node, topic)

    def _maybe_graft(self, a: MemTransport, b: MemTransport, topic: str) -> None:
        ma = a.mesh.setdefault(topic, {})
        mb = b.mesh.setdefault(topic, {})
        if b in ma:
            return
        if (len(ma) < self._d or len(mb) < self._d) and len(ma) < self._d_high and len(mb) < self._d_high:
            ma[b] = None
            mb[a] = None

    def _graft_fill(self, node: MemTransport, topic: str) -> None:
        mesh = node.mesh.setdefault(topic, {})
        need = self._d - len(mesh)
        if need <= 0:
            return
        high = self._d_high
        cands = [p for p in node.conns if p not in mesh and topic in p.subs and len(p.mesh.get(topic, ())) < high]
        if len(cands) > need:
            cands = self._rng.sample(cands, need)
        for p in cands:
            mesh[p] = None
            p.mesh.setdefault(topic, {})[node] = None

    def joined_topic(self, node: MemTransport, topic: str) -> None:
        self._graft_fill(node, topic)
        for p in node.conns:
            if topic in p.subs:
                self._maybe_graft(node, p, topic)

    def left_topic(self, node: MemTransport, topic: str) -> None:
        mesh = node.mesh.pop(topic, {})
        for p in mesh:
            m = p.mesh.get(topic)
            if m is not None:
                m.pop(node, None)
                if p.up:
                    self._graft_fill(p, topic)

    def _fanout_peers(self, node: MemTransport, topic: str) -> dict[MemTransport, None]:
        fan = node.fanout.setdefault(topic, {})
        for p in [p for p in fan if topic not in p.subs]:
            del fan[p]
        need = self._d - len(fan)
        if need > 0:
            cands = [p for p in node.conns if p not in fan and topic in p.subs]
            if len(cands) > need:
                cands = self._rng.sample(cands, need)
            for p in cands:
                fan[p] = None
        return fan

    # -- gossip ------------------------------------------------------------------------
    def publish_from(self, node: MemTransport, topic: str, data: bytes) -> None:
        sched = self._scheduler()
        node.seq += 1
        msg = GossipMessage(topic, node.peer_id, data)
        now = sched.now()
        g = _Gossip((node.index << 32) | node.seq, node.seq, node, msg, now)
        node.counts["gossip_published"] += 1
        targets = node.mesh.get(topic) if topic in node.subs else None
        if not targets:
            targets = self._fanout_peers(node, topic)
        for p in targets:
            self._send_gossip(sched, now, node, p, g, 1)
        self._remember(sched, now, node, g, 0)

    def _send_gossip(
        self, sched: Scheduler, now: float, src: MemTransport, dst: MemTransport, g: _Gossip, hops: int
    ) -> None:
        spec = self._link(src, dst)
        src.counts["gossip_sent"] += 1
        if spec.loss > 0.0 and self._lost(spec, src, dst, g.key, GOSSIP_LOSS):
            src.counts["gossip_lost"] += 1
            return
        if dst in g.seen:
            # A copy to a node that already has the message can only arrive as a duplicate:
            # count it now rather than schedule it (it still occupies a limited link).
            if spec.bandwidth_bps is not None:
                self._arrival(now, spec, src, dst, len(g.data), g.key, GOSSIP_JITTER)
            c = dst.counts
            c["gossip_received"] += 1
            c["gossip_duplicates"] += 1
            return
        if spec.perfect:
            sched.call_at(now, self._on_gossip, dst, src, g, hops)
            return
        at = self._arrival(now, spec, src, dst, len(g.data), g.key, GOSSIP_JITTER)
        sched.call_at(at, self._on_gossip, dst, src, g, hops)

    def _on_gossip(self, dst: MemTransport, src: MemTransport, g: _Gossip, hops: int) -> None:
        if not dst.up or src not in dst.conns:
            return
        c = dst.counts
        c["gossip_received"] += 1
        if dst in g.seen:
            c["gossip_duplicates"] += 1
            return
        g.seen.add(dst)
        topic = g.topic
        subs = dst.subs.get(topic)
        if not subs:
            c["gossip_dropped_not_subscribed"] += 1
            return
        validator = dst.validators.get(topic)
        if validator is not None:
            try:
                ok = bool(validator(g.origin.peer_id, g.data))
            except Exception:  # a failing validator rejects the message
                ok = False
            if not ok:
                c["gossip_dropped_invalid"] += 1
                return
        for s in subs:
            if s.put(g.msg):
                c["gossip_delivered"] += 1
            else:
                c["gossip_dropped_slow_subscriber"] += 1
        sched = self._sched
        assert sched is not None
        now = sched.now()
        if self._observers:
            d = Delivery(dst.peer_id, topic, g.origin.peer_id, g.seqno, hops, g.published_at, now)
            for fn in self._observers:
                fn(d)
        origin = g.origin
        for p in dst.mesh.get(topic, ()):
            if p is not src and p is not origin:
                self._send_gossip(sched, now, dst, p, g, hops + 1)
        self._remember(sched, now, dst, g, hops)

    # -- lazy gossip (IHAVE / IWANT) ------------------------------------------------------
    def _remember(self, sched: Scheduler, now: float, node: MemTransport, g: _Gossip, hops: int) -> None:
        """Keep ``g`` for the node's next heartbeat, scheduling one if none is pending."""
        if not self._d_lazy:
            return
        buf = self._lazy.get(node)
        if buf is None:  # no heartbeat pending for this node: schedule one
            buf = self._lazy[node] = []
            phase = 1.0 - unit_draw(self._seed_key, node.index, 0, HEARTBEAT)  # in (0, 1]
            sched.call_at(now + self._heartbeat * phase, self._heartbeat_tick, node, node.epoch)
        buf.append((g, hops))

    def _heartbeat_tick(self, node: MemTransport, epoch: int) -> None:
        if node.epoch != epoch:
            return
        buf = self._lazy.pop(node, [])
        if not node.up:
            return
        sched = self._sched
        assert sched is not None
        now = sched.now()
        c = node.counts
        for g, hops in buf:
            topic = g.topic
            eager = node.mesh.get(topic) or node.fanout.get(topic) or {}
            origin = g.origin
            cands = [p for p in node.conns if p not in eager and p is not origin and topic in p.subs]
            n = max(self._d_lazy, len(cands) // 4)
            if len(cands) > n:
                base = node.index << 32
                cands.sort(key=lambda p: unit_draw(self._seed_key, g.key, base | p.index, LAZY_PICK))
                del cands[n:]
            for p in cands:
                c["gossip_ihave_sent"] += 1
                if p in g.seen:
                    continue  # it will ignore the advert
                spec = self._link(node, p)
                if self._lost(spec, node, p, g.key, IHAVE_LOSS):
                    c["gossip_lost"] += 1
                    continue
                at = self._arrival(now, spec, node, p, CONTROL_BYTES, g.key, IHAVE_JITTER)
                sched.call_at(at, self._on_ihave, p, node, g, hops)

    def _on_ihave(self, node: MemTransport, adv: MemTransport, g: _Gossip, hops: int) -> None:
        if not node.up or adv not in node.conns or node in g.seen or node in g.wanted:
            return
        if g.topic not in node.subs:
            return
        g.wanted.add(node)
        node.counts["gossip_iwant_sent"] += 1
        spec = self._link(node, adv)
        if self._lost(spec, node, adv, g.key, IWANT_LOSS):
            node.counts["gossip_lost"] += 1
            return
        sched = self._sched
        assert sched is not None
        at = self._arrival(sched.now(), spec, node, adv, CONTROL_BYTES, g.key, IWANT_JITTER)
        sched.call_at(at, self._on_iwant, adv, node, g, hops)

    def _on_iwant(self, node: MemTransport, asker: MemTransport, g: _Gossip, hops: int) -> None:
        if not node.up or asker not in node.conns:
            return
        sched = self._sched
        assert sched is not None
        self._send_gossip(sched, sched.now(), node, asker, g, hops + 1)
