"""GossipSub peer exchange (PX), accepted only within bounds (docs/net.md, "Peer exchange").

A PRUNE may name other peers of its topic, each with a signed peer record (its
addresses, signed by its own key), so that a pruned peer finds new mesh partners
without a bootstrap node.  Taken as it comes, PX lets a stranger steer this node's
dials: name its sybils (an eclipse), or make it dial over and over.  py-libp2p 0.8.1
dials every named peer (up to ``px_peers_count``) from any sender, for any topic, even
with ``do_px`` off, in the loop that reads the sender's RPCs, and dials a record's
addresses even when the record is signed by another key than the peer it names.

:class:`PxPolicy` is the sans-IO core: which named peers to take from one PRUNE, and
why each other one is ignored.  :class:`PeerExchange` is the adapter in the network
thread: it checks the signed records of what the policy took and dials them in the
background, through the node's dial limit.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, deque
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from ._p2p_config import P2PConfig
from ._p2p_util import Counters, peer_str

__all__ = ["PX_IGNORED", "PxPlan", "PxPolicy", "PeerExchange", "px_counter", "leave_topics"]

logger = logging.getLogger(__name__)

PX_IGNORED = (
    "disabled",     # peer_exchange is off
    "not_ready",    # the node is still starting
    "not_joined",   # a PRUNE for a topic this node is not in
    "sender",       # the sender fails the member gate (or py-libp2p's score gate)
    "connected",    # this node, a peer already connected or being dialled, or named twice
    "not_member",   # the named peer fails the member gate
    "excess",       # beyond ``px_peers`` in one PRUNE
    "over_budget",  # beyond ``px_dial_budget`` dials in ``px_dial_window`` seconds
    "bad_record",   # no signed peer record, a forged or foreign one, or no address in it
)
"""Why a peer named in a PRUNE is not dialled; each counts as ``px_ignored`` and ``px_ignored_<reason>``."""

MAX_ADDRS = 8
"""Addresses of one signed record dialled at most (a record may list many)."""


def px_counter(reason: str) -> str:
    """The counter of one ignore reason."""
    return f"px_ignored_{reason}"


@dataclass(frozen=True)
class PxPlan:
    """What to do with the peers one PRUNE names."""

    take: tuple[int, ...] = ()
    """Indices of the named peers to check and dial (each holds a slot of the budget)."""
    ignored: Counter[str] = field(default_factory=Counter)
    """``reason -> count`` for the others (reasons from :data:`PX_IGNORED`)."""


class PxPolicy:
    """Which peers named in a PRUNE this node dials (sans-IO: time and connections are arguments).

    Rules, in order: nothing for a topic this node is not in, nor from a sender that fails the
    member gate; never this node, a peer already connected or being dialled, or one named twice;
    never a peer that fails the gate; at most ``max_per_prune`` per PRUNE; at most ``budget``
    taken in any ``window`` seconds.  Every peer taken must be released with :meth:`done`.
    """

    def __init__(
        self, *, me: str, max_per_prune: int, budget: int, window: float, gate: Callable[[str], bool] | None = None
    ) -> None:
        self._me = me
        self._max = max(0, max_per_prune)
        self._budget = max(0, budget)
        self._window = window
        self._gate = gate
        self._taken: deque[float] = deque()
        self._pending: set[str] = set()

    def plan(
        self,
        sender: str,
        named: Sequence[str | None],
        *,
        joined: bool,
        connected: Container[str],
        now: float,
        sender_ok: bool = True,
    ) -> PxPlan:
        """Decide for each peer ``named`` (None: an id that does not decode) in one PRUNE from ``sender``."""
        ignored: Counter[str] = Counter()
        if not named:
            return PxPlan()
        if not joined:
            ignored["not_joined"] = len(named)
            return PxPlan((), ignored)
        if not sender_ok or not self.admits(sender):
            ignored["sender"] = len(named)
            return PxPlan((), ignored)
        while self._taken and self._taken[0] <= now - self._window:
            self._taken.popleft()
        take: list[int] = []
        seen: set[str] = set()
        for i, peer in enumerate(named):
            if peer is None:
                ignored["bad_record"] += 1
            elif peer == self._me or peer in seen or peer in self._pending or peer in connected:
                ignored["connected"] += 1
            elif not self.admits(peer):
                ignored["not_member"] += 1
            elif len(take) >= self._max:
                ignored["excess"] += 1
            elif len(self._taken) >= self._budget:
                ignored["over_budget"] += 1
            else:
                take.append(i)
                self._taken.append(now)
                self._pending.add(peer)
            if peer is not None:
                seen.add(peer)
        return PxPlan(tuple(take), ignored)

    def done(self, peer: str) -> None:
        """The check or dial of ``peer`` (taken by :meth:`plan`) is over."""
        self._pending.discard(peer)

    @property
    def pending(self) -> int:
        """Peers taken and not yet released."""
        return len(self._pending)

    def admits(self, peer: str) -> bool:
        """Whether ``peer`` passes the member gate (always, without one)."""
        if self._gate is None:
            return True
        try:
            return bool(self._gate(peer))
        except Exception as exc:  # a gate that raises (e.g. on a malformed id) refuses; it never breaks the node
            logger.debug("member gate raised for %r: %r", peer, exc)
            return False


class PeerExchange:
    """The PX adapter: PRUNE entries in (from :class:`~._p2p_tuning.EdgeGossipSub`), dials out.

    Runs in the network thread.  ``attach(nursery)`` once the node's nursery runs; until then
    PX is ignored (``not_ready``).
    """

    def __init__(
        self,
        host: Any,
        config: P2PConfig,
        counters: Counters,
        gate: Callable[[str], bool] | None,
        dials: trio.Semaphore,
    ) -> None:
        self._host = host
        self._c = config
        self._counters = counters
        self._gate = gate
        self._dials = dials
        self._nursery: trio.Nursery | None = None
        self.policy = PxPolicy(
            me=host.get_id().to_base58(), max_per_prune=config.px_peers, budget=config.px_dial_budget,
            window=config.px_dial_window, gate=gate,
        )

    @property
    def enabled(self) -> bool:
        return self._c.peer_exchange

    def attach(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    def offer(self, to_peer: Any, candidates: Sequence[Any]) -> list[tuple[bytes, bytes]]:
        """``(peer id, signed peer record)`` of up to ``px_peers`` of ``candidates`` (libp2p IDs of the
        topic's peers) to name in a PRUNE to ``to_peer``: in swarm mode none to a non-member and no
        non-member named; only peers whose signed record this node holds (nothing else is dialled)."""
        if not self._c.peer_exchange or not self.policy.admits(to_peer.to_base58()):
            return []
        store = self._host.get_peerstore()
        pool = [p for p in candidates if p != to_peer]
        random.shuffle(pool)
        out: list[tuple[bytes, bytes]] = []
        for pid in pool:
            if len(out) >= self._c.px_peers:
                break
            if not self.policy.admits(pid.to_base58()):
                continue
            envelope = store.get_peer_record(pid)
            if envelope is not None:
                out.append((pid.to_bytes(), envelope.marshal_envelope()))
        self._counters.add("px_sent", len(out))
        return out

    def on_prune(self, sender: Any, entries: Sequence[Any], *, joined: bool, sender_ok: bool) -> None:
        """Handle the PX entries (``rpc_pb2.PeerInfo``) of one PRUNE from ``sender`` (a libp2p ID)."""
        if not entries:
            return
        self._counters.add("px_received", len(entries))
        if not self._c.peer_exchange or self._nursery is None:
            self._ignore(Counter({"disabled" if not self._c.peer_exchange else "not_ready": len(entries)}))
            return
        named = [peer_str(bytes(e.peerID)) for e in entries]
        plan = self.policy.plan(
            sender.to_base58(), named, joined=joined, connected=self._connected(),
            now=trio.current_time(), sender_ok=sender_ok,
        )
        bad: Counter[str] = Counter()
        for i in plan.take:
            peer = named[i]
            assert peer is not None
            info = self._verified(entries[i], peer)
            if info is None:
                bad["bad_record"] += 1
                self.policy.done(peer)
                continue
            self._counters.add("px_accepted")
            self._nursery.start_soon(self._dial, peer, info)
        self._ignore(plan.ignored + bad)

    def _ignore(self, ignored: Counter[str]) -> None:
        for reason, n in ignored.items():
            if n:
                self._counters.add("px_ignored", n)
                self._counters.add(px_counter(reason), n)

    def _connected(self) -> set[str]:
        conns = self._host.get_network().connections
        return {pid.to_base58() for pid, lst in list(conns.items()) if lst}

    def _verified(self, entry: Any, peer: str) -> Any:
        """The PeerInfo of ``entry``'s signed record if it is signed by ``peer`` and names ``peer``; else None."""
        from libp2p.peer.envelope import consume_envelope
        from libp2p.peer.id import ID
        from libp2p.peer.peerinfo import PeerInfo

        raw = bytes(entry.signedPeerRecord) if entry.HasField("signedPeerRecord") else b""
        if not raw:
            return None
        try:
            envelope, record = consume_envelope(raw, "libp2p-peer-record")  # checks the envelope's signature
            signer = ID.from_pubkey(envelope.public_key)
        except Exception as exc:  # malformed protobuf, unknown key type, bad signature: all remote faults
            logger.debug("PX record for %s does not verify: %r", peer, exc)
            return None
        if record.peer_id.to_base58() != peer or signer.to_base58() != peer:
            return None  # a record for another peer, or signed by another key than the one it names
        addrs = [a for a in record.addrs if "/p2p-circuit" not in str(a)][:MAX_ADDRS]
        if not addrs:
            return None
        self._host.get_peerstore().consume_peer_record(envelope, 7200)  # keeps the newest record only
        return PeerInfo(record.peer_id, addrs)

    async def _dial(self, peer: str, info: Any) -> None:
        try:
            with trio.move_on_after(self._c.dial_timeout) as scope:
                async with self._dials:
                    try:
                        await self._host.connect(info)
                    except Exception as exc:  # SwarmException, OSError, MultiError...: the named peer is unreachable
                        logger.debug("PX dial to %s failed: %r", peer, exc)
                        self._counters.add("px_dial_failures")
                        return
            if scope.cancelled_caught:
                self._counters.add("px_dial_failures")
            else:
                self._counters.add("px_dials")
        finally:
            self.policy.done(peer)


async def leave_topics(pubsub: Any, topics: Sequence[str]) -> None:
    """Unsubscribe from ``topics`` (a PRUNE, with PX, to each mesh peer), then wait until the
    outbound RPC queues have drained (py-libp2p signals no drain: polled, for 1 s at most)."""
    for topic in topics:
        try:
            await pubsub.unsubscribe(topic)
        except Exception as exc:  # a closing peer's stream may fail: leaving is best effort
            logger.debug("leaving %s: %r", topic, exc)
    for _ in range(100):
        if not any(len(q) for q in list(pubsub.peer_queues.values())):
            break
        await trio.sleep(0.01)
    await trio.sleep(0.02)  # the writer popped the last RPC: let its write finish
