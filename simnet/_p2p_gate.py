"""Partitions and degraded links on real libp2p hosts, enforced at each node's own edge.

Loopback (or a cluster's LAN) has no links the simulator can shape, so a node gates
its own connections instead: :class:`GatedTransport` wraps a node's transport (and each
submitter's) and, while a partition is on,

* closes its connections to the peers on the other side and closes again any that come
  back (a dial from the other side shows up as a JOIN, within one connection scan);
* refuses to dial them or to send them requests (:class:`~edgenode.net.Unreachable`, as a
  cut link would), and refuses their requests;
* drops gossip whose origin is on the other side, in the topic validators and at delivery.

Every node of the swarm applies the same cut, whatever process or machine hosts it, so a
partition also cuts the links between groups on different workers or Ray nodes.

A degraded node adds its link's latency at its edge: ``2 x latency_ms`` to every request
it sends or serves (the request out, the answer back) and ``latency_ms`` to every gossip
message it receives; with probability ``loss`` a request also waits one TCP retransmission
(:data:`RETRANSMIT_S`), since loss on a TCP link shows as delay, not as lost requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

from edgenode.errors import EdgenodeError
from edgenode.net import GossipMessage, Handler, PeerEventKind, Subscription, Transport, Unreachable, Validator

from ._wrap import DelegatingTransport

__all__ = ["GatedTransport", "RETRANSMIT_S", "peer_of_addr"]

RETRANSMIT_S = 0.2
"""Linux's minimum TCP retransmission timeout: what one lost segment costs a request."""


def peer_of_addr(addr: str) -> str:
    """The peer id at the end of a ``.../p2p/<id>`` multiaddr ("" when there is none)."""
    _head, sep, tail = addr.rpartition("/p2p/")
    return tail if sep else ""


class _Filtered:
    """A subscription that skips messages from blocked origins and delays the rest when degraded."""

    def __init__(self, owner: GatedTransport, inner: Subscription) -> None:
        self._owner = owner
        self._inner = inner

    def __aiter__(self) -> _Filtered:
        return self

    async def __anext__(self) -> GossipMessage:
        while True:
            msg = await self._inner.__anext__()
            if msg.sender in self._owner.blocked:
                self._owner.gated["gossip_in"] += 1
                continue
            if self._owner.latency_s > 0:
                await asyncio.sleep(self._owner.latency_s)
            return msg

    async def aclose(self) -> None:
        await self._inner.aclose()


class GatedTransport(DelegatingTransport):
    """A node's transport that keeps to its side of a partition and adds a degraded link's delay."""

    def __init__(self, inner: Transport, seed: int = 0) -> None:
        super().__init__(inner)
        self.blocked: frozenset[str] = frozenset()
        """Peers on the other side of the current partition (replaced whole: validators read it
        from the network thread)."""
        self.cut: set[str] = set()
        """Peers this node was connected to when a partition closed the connection (redialled on heal)."""
        self.gated: dict[str, int] = {"gossip_in": 0, "requests_in": 0, "requests_out": 0, "dials": 0, "closed": 0}
        self.latency_s = 0.0
        self.loss = 0.0
        self._rng = random.Random(0x6A7E ^ seed)
        self._watch: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        await self.inner.start()
        self._watch = asyncio.create_task(self._close_blocked_joins())

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        await self.inner.stop()

    async def _close_blocked_joins(self) -> None:
        async for ev in self.inner.peer_events():
            if ev.kind is PeerEventKind.JOIN and ev.peer in self.blocked:
                await self._close(ev.peer)

    async def _close(self, peer: str) -> None:
        self.gated["closed"] += 1
        with contextlib.suppress(EdgenodeError):
            await self.inner.disconnect(peer)

    # -- faults --------------------------------------------------------------------
    async def block(self, peers: frozenset[str]) -> None:
        """Keep to this side of a partition: ``peers`` are on the other side (replaces any earlier cut)."""
        self.blocked = frozenset(peers) - {self.peer_id}
        now = [p for p in self.inner.peers() if p in self.blocked]
        self.cut.update(now)
        for p in now:
            await self._close(p)

    def heal(self) -> set[str]:
        """End the partition; return the peers whose connections it closed (for the caller to redial)."""
        self.blocked = frozenset()
        cut, self.cut = self.cut, set()
        return cut

    def degrade(self, latency_ms: float, loss: float) -> None:
        """Add a degraded link's latency (and TCP retransmissions at ``loss``) at this node's edge."""
        self.latency_s = max(0.0, latency_ms) / 1000.0
        self.loss = min(max(loss, 0.0), 1.0)

    def restore(self) -> None:
        self.latency_s = 0.0
        self.loss = 0.0

    async def _link_delay(self) -> None:
        delay = 2 * self.latency_s + (RETRANSMIT_S if self.loss and self._rng.random() < self.loss else 0.0)
        if delay > 0:
            await asyncio.sleep(delay)

    # -- the gated calls -------------------------------------------------------------
    async def connect(self, addr: str, timeout: float = 10.0) -> str:
        if peer_of_addr(addr) in self.blocked:
            self.gated["dials"] += 1
            raise Unreachable(f"{peer_of_addr(addr)} is on the other side of a partition")
        return await self.inner.connect(addr, timeout)

    async def disconnect(self, peer: str) -> None:
        await self.inner.disconnect(peer)

    async def request(self, peer: str, protocol: str, data: bytes, timeout: float = 10.0) -> bytes:
        if peer in self.blocked:
            self.gated["requests_out"] += 1
            raise Unreachable(f"{peer} is on the other side of a partition")
        await self._link_delay()
        return await self.inner.request(peer, protocol, data, timeout)

    def serve(self, protocol: str, handler: Handler) -> None:
        async def gated(sender: str, data: bytes) -> bytes:
            if sender in self.blocked:
                self.gated["requests_in"] += 1
                raise Unreachable(f"{sender} is on the other side of a partition")
            await self._link_delay()
            return await handler(sender, data)

        self.inner.serve(protocol, gated)

    def set_validator(self, topic: str, validator: Validator) -> None:
        def gated(sender: str, data: bytes) -> bool:  # the network thread: reads one frozenset, no lock
            return sender not in self.blocked and validator(sender, data)

        self.inner.set_validator(topic, gated)

    def subscribe(self, topic: str) -> Subscription:
        return _Filtered(self, self.inner.subscribe(topic))

    @property
    def counters(self) -> dict[str, int]:
        return {**self.inner.counters, **{f"partition_dropped_{k}": v for k, v in self.gated.items() if v}}
