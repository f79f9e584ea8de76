"""The in-memory network: many :class:`Transport` nodes in one process.

A :class:`MemNetwork` owns a simulated world: per-link latency, jitter, loss
and bandwidth (:class:`LinkSpec`), partitions and healing, node crash and
restart.  Gossip is a GossipSub-like mesh: each node keeps up to
``gossip_degree`` (at most ``gossip_degree_high``) mesh neighbours per topic
among its connected, subscribed peers, and forwards a message it has not seen
to its mesh, one link delay per hop; at its next heartbeat it also advertises
the message to a few non-mesh peers, which fetch it if they lack it
(IHAVE/IWANT), so holes in the mesh and lost copies are repaired.

Time comes from the running asyncio loop only (``loop.call_at``,
``loop.time()``); every network event runs at its exact simulated time, in a
deterministic order.  Loss and jitter are drawn per (message, link) from the
seed; mesh choices come from ``random.Random(seed)``.  The same seed and the
same sequence of calls give the same deliveries and drops.

Layout, with no cycle and nothing private shared between modules: ``_mem_core``
(scheduler, links, streams: no memnet types), ``_mem_node`` (:class:`MemTransport`,
the node's own state in public attributes, and the :class:`~._mem_node.Fabric`
protocol it needs of its network), ``_mem_gossip`` (the mesh router and its
per-node lazy-gossip state, over transports), and this module (:class:`MemNetwork`:
links, partitions, crashes, requests; it implements ``Fabric``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from ..errors import LocalError
from ..identity import Identity
from ._errors import RemoteFailure, Unreachable
from ._mem_clock import VirtualTimeLoop, run_virtual
from ._mem_core import Delivery, LinkSpec
from ._mem_gossip import REQ_JITTER, REQ_LOSS, RESP_JITTER, RESP_LOSS, GossipLayer
from ._mem_node import ADDR_PREFIX, COUNTER_NAMES, MemTransport, addr_peer_id
from ._transport import REASON_NO_HANDLER, PeerEventKind

__all__ = [
    "PROVIDERS_PER_KEY",
    "MemNetwork",
    "MemTransport",
    "LinkSpec",
    "Delivery",
    "ADDR_PREFIX",
    "COUNTER_NAMES",
    "addr_peer_id",
    "VirtualTimeLoop",
    "run_virtual",
]

PROVIDERS_PER_KEY = 20
"""Providers the network keeps per blob (py-libp2p's DHT keeps as many per key)."""


class MemNetwork(GossipLayer):
    """A simulated network; ``add_node`` gives each node its :class:`MemTransport`.

    ``seed`` fixes every random choice.  ``default_link`` applies to any pair of
    nodes without a more specific :meth:`set_link` / :meth:`set_class_link`.
    Gossip: ``gossip_degree`` (D) mesh peers per topic, at most
    ``gossip_degree_high`` (2D); at its next heartbeat (``heartbeat_s``, each
    node at its own phase) a node advertises the messages it got to
    ``max(gossip_lazy, a quarter of)`` its other subscribed peers, which fetch
    the ones they lack (IHAVE/IWANT); ``gossip_lazy=0`` turns that off.
    ``queue_size`` bounds each subscription and peer-event stream (a full
    stream drops and counts).  Content routing is a registry of the network's
    (:meth:`provide`): at most ``max_provided`` blobs per node and
    :data:`PROVIDERS_PER_KEY` providers per blob (the oldest go first), found
    at once and everywhere (partitions do not hide records; a stale provider
    fails when asked, as in a DHT).
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        default_link: LinkSpec | None = None,
        gossip_degree: int = 6,
        gossip_degree_high: int | None = None,
        gossip_lazy: int | None = None,
        heartbeat_s: float = 1.0,
        queue_size: int = 1024,
        max_provided: int = 4096,
    ) -> None:
        super().__init__(seed, default_link, gossip_degree, gossip_degree_high, gossip_lazy, heartbeat_s)
        if queue_size < 1:
            raise LocalError("queue_size must be >= 1")
        if max_provided < 0:
            raise LocalError("max_provided must be >= 0")
        self._max_provided = max_provided
        self._providers: dict[str, dict[MemTransport, None]] = {}
        """Blob digest -> its providers, oldest first."""
        self._provided: dict[MemTransport, dict[str, None]] = {}
        """Node -> the blobs it announced, oldest first."""
        self._queue_size = queue_size
        self._nodes: dict[str, MemTransport] = {}
        self._count = 0
        self._severed: list[tuple[MemTransport, MemTransport]] = []

    # -- nodes -------------------------------------------------------------------
    def add_node(self, who: Identity | str, *, node_class: str = "default") -> MemTransport:
        """A new (not yet started) transport for ``who`` (an Identity or a peer id).

        A peer id may be reused once its previous transport is stopped.
        """
        peer_id = who.peer_id if isinstance(who, Identity) else who
        if not peer_id or "/" in peer_id:
            raise LocalError(f"not a usable peer id: {peer_id!r}")
        old = self._nodes.get(peer_id)
        if old is not None and not old.stopped:
            raise LocalError(f"node {peer_id} is already in the network")
        node = MemTransport(self, peer_id, self._count, node_class, self._queue_size)
        self._count += 1
        self._nodes[peer_id] = node
        return node

    def nodes(self) -> list[str]:
        """Peer ids of every node added (in order), stopped ones included."""
        return list(self._nodes)

    def transport(self, peer: str) -> MemTransport:
        node = self._nodes.get(peer)
        if node is None:
            raise LocalError(f"no node {peer} in this network")
        return node

    def lookup(self, peer: str) -> MemTransport:
        node = self._nodes.get(peer)
        if node is None:
            raise Unreachable(f"unknown peer {peer}")
        return node

    def counters(self) -> dict[str, int]:
        """Every node's counters, summed."""
        total = dict.fromkeys(COUNTER_NAMES, 0)
        for node in self._nodes.values():
            for k, v in node.counts.items():
                total[k] += v
        return total

    # -- links -----------------------------------------------------------------------
    def set_link(self, a: str, b: str, spec: LinkSpec) -> None:
        """Set the link between nodes ``a`` and ``b`` (both directions)."""
        i, j = self.transport(a).index, self.transport(b).index
        self._pair_links[(min(i, j), max(i, j))] = spec

    def set_class_link(self, class_a: str, class_b: str, spec: LinkSpec) -> None:
        """Set the link between any node of ``class_a`` and any of ``class_b`` (a pair override wins)."""
        self._class_links[(min(class_a, class_b), max(class_a, class_b))] = spec

    def link(self, a: str, b: str) -> LinkSpec:
        """The link spec in force between ``a`` and ``b``."""
        return self._link(self.transport(a), self.transport(b))

    # -- topology ----------------------------------------------------------------------
    def check_dialable(self, src: MemTransport, dst: MemTransport) -> None:
        if not dst.up:
            raise Unreachable(f"peer {dst.peer_id} is not running")
        if self._blocked(src, dst):
            raise Unreachable(f"peer {dst.peer_id} is on the other side of a partition")

    def handshake(self, src: MemTransport, dst: MemTransport, done: asyncio.Future[None]) -> None:
        rtt = 2.0 * self._link(src, dst).latency_ms / 1000.0

        def finish() -> None:
            if not done.done():
                done.set_result(None)

        self._scheduler().call_later(rtt, finish)

    def wire(self, a: str, b: str) -> bool:
        """Connect two running nodes at once (no handshake delay); False if already
        connected or blocked by a partition."""
        na, nb = self.transport(a), self.transport(b)
        if na is nb:
            raise LocalError("cannot connect a node to itself")
        if not (na.up and nb.up):
            raise LocalError("both nodes must be running")
        if nb in na.conns or self._blocked(na, nb):
            return False
        self.link_up(na, nb)
        return True

    def connect_random(self, k: int, peers: Sequence[str] | None = None) -> int:
        """Wire each running node to ``k`` random others (at least one earlier node
        first, so the whole graph is connected).  Returns the connections made."""
        ids = [p for p in (self.nodes() if peers is None else peers) if self.transport(p).up]
        made = 0
        for i, pid in enumerate(ids):
            chosen: list[str] = []
            if i > 0:
                chosen.append(ids[self._rng.randrange(i)])
            others = len(ids) - 1
            want = min(k, others)
            attempts = 0
            while len(chosen) < want and attempts < 8 * want + 8:
                attempts += 1
                j = self._rng.randrange(len(ids))
                if j != i and ids[j] not in chosen:
                    chosen.append(ids[j])
            for other in chosen:
                if self.wire(pid, other):
                    made += 1
        return made

    def full_mesh(self, peers: Sequence[str] | None = None) -> int:
        """Wire every pair of running nodes; returns the connections made."""
        ids = [p for p in (self.nodes() if peers is None else peers) if self.transport(p).up]
        made = 0
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                if self.wire(a, b):
                    made += 1
        return made

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Split the network: nodes in different groups cannot reach each other.

        Nodes named in no group form one more group together.  Connections across
        groups close at once (both sides see LEAVE); :meth:`heal` restores them.
        """
        mapping: dict[str, int] = {}
        for g, members in enumerate(groups):
            for pid in members:
                self.transport(pid)
                if pid in mapping:
                    raise LocalError(f"{pid} is in two partition groups")
                mapping[pid] = g
        self._groups = mapping
        for node in list(self._nodes.values()):
            for peer in list(node.conns):
                if node.index < peer.index and self._blocked(node, peer):
                    self._severed.append((node, peer))
                    self.link_down(node, peer)

    def heal(self) -> None:
        """End the partition and restore the connections it closed (where both ends are up)."""
        self._groups = None
        severed, self._severed = self._severed, []
        for a, b in severed:
            if a.up and b.up and b not in a.conns:
                self.link_up(a, b)

    def crash(self, peer: str) -> None:
        """Crash a node: its connections drop (peers see LEAVE), its queues and
        in-flight messages are lost, its running handlers are cancelled and its own
        pending requests fail with Unreachable.  Subscriptions and handlers stay
        registered for :meth:`restart`."""
        node = self.transport(peer)
        if not node.up:
            raise LocalError(f"node {peer} is not running")
        node.crash()
        self.node_down(node)
        self._lazy.pop(node, None)  # its pending heartbeat finds a new epoch and does nothing
        node.after_crash()

    def restart(self, peer: str) -> None:
        """Bring a crashed node back; it reconnects to the peers it had (those still
        up and reachable) and rejoins its topics' meshes."""
        node = self.transport(peer)
        if not node.crashed:
            raise LocalError(f"node {peer} is not crashed")
        for other in node.restart():
            if node.up and other.up and other not in node.conns and not self._blocked(node, other):
                self.link_up(node, other)
        for topic in list(node.subs):
            self.joined_topic(node, topic)

    def is_up(self, peer: str) -> bool:
        return self.transport(peer).up

    # -- connections and mesh ----------------------------------------------------------
    def link_up(self, a: MemTransport, b: MemTransport) -> None:
        a.conns[b] = None
        b.conns[a] = None
        a.emit(PeerEventKind.JOIN, b)
        b.emit(PeerEventKind.JOIN, a)
        for topic in a.subs:
            if topic in b.subs:
                self._maybe_graft(a, b, topic)

    def link_down(self, a: MemTransport, b: MemTransport) -> None:
        a.conns.pop(b, None)
        b.conns.pop(a, None)
        a.fail_pending(lambda: Unreachable(f"connection to {b.peer_id} closed"), only=b)
        b.fail_pending(lambda: Unreachable(f"connection to {a.peer_id} closed"), only=a)
        a.emit(PeerEventKind.LEAVE, b)
        b.emit(PeerEventKind.LEAVE, a)
        self._prune_peer(a, b)
        self._prune_peer(b, a)

    def node_down(self, node: MemTransport) -> None:
        for peer in list(node.conns):
            self.link_down(node, peer)
        node.mesh.clear()
        node.fanout.clear()

    # -- content routing -----------------------------------------------------------------
    @property
    def max_provided(self) -> int:
        """Blobs one node keeps announced at most (its oldest announcement goes first)."""
        return self._max_provided

    def provide(self, node: MemTransport, digest: str) -> bool:
        if not node.conns or self._max_provided == 0:
            return False
        key = digest.lower()
        mine = self._provided.setdefault(node, {})
        mine.pop(key, None)
        mine[key] = None
        while len(mine) > self._max_provided:
            self._forget(node, next(iter(mine)))
        holders = self._providers.setdefault(key, {})
        holders.pop(node, None)
        holders[node] = None
        while len(holders) > PROVIDERS_PER_KEY:
            self._forget(next(iter(holders)), key)
        return True

    def _forget(self, node: MemTransport, key: str) -> None:
        self._provided.get(node, {}).pop(key, None)
        holders = self._providers.get(key)
        if holders is not None:
            holders.pop(node, None)
            if not holders:
                del self._providers[key]

    def providers(self, node: MemTransport, digest: str, limit: int) -> list[str]:
        if not node.conns:
            return []
        found: list[str] = []
        for peer in reversed(list(self._providers.get(digest.lower(), {}))):
            if peer.stopped:  # left the network for good: its records go
                for key in list(self._provided.pop(peer, {})):
                    self._forget(peer, key)
            elif len(found) < limit:
                found.append(peer.peer_id)
        return found

    # -- requests ----------------------------------------------------------------------
    def send_request(self, src: MemTransport, dst: MemTransport, rid: int, protocol: str, data: bytes) -> None:
        sched = self._scheduler()
        spec = self._link(src, dst)
        key = (src.index << 32) | rid
        if self._lost(spec, src, dst, key, REQ_LOSS):
            src.counts["requests_lost"] += 1
            return
        at = self._arrival(sched.now(), spec, src, dst, len(data) + len(protocol), key, REQ_JITTER)
        sched.call_at(at, self._on_request, dst, src, rid, protocol, data)

    def _on_request(self, dst: MemTransport, src: MemTransport, rid: int, protocol: str, data: bytes) -> None:
        if not dst.up or src not in dst.conns:
            return
        handler = dst.handlers.get(protocol)
        if handler is None:
            dst.counts["requests_unhandled"] += 1
            self.send_response(dst, src, rid, False, REASON_NO_HANDLER.encode())
            return
        dst.spawn_handler(handler, src, rid, data)

    def send_response(self, src: MemTransport, dst: MemTransport, rid: int, ok: bool, payload: bytes) -> None:
        if dst not in src.conns:
            return
        sched = self._scheduler()
        spec = self._link(src, dst)
        key = (dst.index << 32) | rid
        if self._lost(spec, src, dst, key, RESP_LOSS):
            src.counts["requests_lost"] += 1
            return
        at = self._arrival(sched.now(), spec, src, dst, len(payload), key, RESP_JITTER)
        sched.call_at(at, self._on_response, dst, src, rid, ok, payload)

    def _on_response(self, dst: MemTransport, src: MemTransport, rid: int, ok: bool, payload: bytes) -> None:
        entry = dst.pending.get(rid)
        if entry is None or entry[0] is not src or entry[1].done():
            return
        if ok:
            entry[1].set_result(payload)
        else:
            entry[1].set_exception(RemoteFailure(f"{src.peer_id}: {payload.decode('utf-8', 'replace')}"))
