"""GossipSub peer exchange (PX) on net.p2p: the mesh heals without its bootstrap, within bounds.

The integration tests run real py-libp2p hosts on 127.0.0.1 with the DHT and NAT traversal
off, so that PX is the only way a node can learn of another.  The unit tests pin the
sans-IO policy (:class:`PxPolicy`) and the record checks of the adapter against a fake host.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from edgenode.errors import LocalError
from edgenode.identity import Identity
from edgenode.net import Subscription
from edgenode.net._p2p_px import PeerExchange, PxPolicy
from edgenode.net._p2p_util import Counters
from edgenode.net.p2p import P2PConfig, P2PTransport
from tests.net.p2p_helpers import LOOPBACK, WAIT, running

TOPIC = "px/test/1"
ALONE = P2PConfig(dht=False, nat_traversal=False, holepunch=False, autonat=False, bootstrap_timeout=5.0)
"""No DHT, relays or AutoNAT: a node learns of another only from its own dials or from PX."""
NO_PX = dataclasses.replace(ALONE, peer_exchange=False)
QUIET = 3.0
"""How long a test watches for something that must not happen (PX dials start on the PRUNE)."""


class Inbox:
    """Collects what one subscription delivers."""

    def __init__(self, sub: Subscription) -> None:
        self.got: list[tuple[str, bytes]] = []
        self._task = asyncio.ensure_future(self._run(sub))

    async def _run(self, sub: Subscription) -> None:
        async for msg in sub:
            self.got.append((msg.sender, msg.data))

    def has_from(self, sender: str, prefix: bytes) -> bool:
        return any(s == sender and d.startswith(prefix) for s, d in self.got)


def node(config: P2PConfig = ALONE, gate: Callable[[str], bool] | None = None) -> tuple[P2PTransport, Inbox]:
    t = P2PTransport(Identity.generate(), listen=LOOPBACK, config=config, gate=gate)
    return t, Inbox(t.subscribe(TOPIC))


async def until(cond: Callable[[], bool], what: str, every: Callable[[], Any] | None = None) -> None:
    """Poll ``cond`` (calling ``every`` first each round, e.g. to publish again) for at most WAIT s."""
    try:
        async with asyncio.timeout(WAIT):
            while True:
                if every is not None:
                    await every()
                if cond():
                    return
                await asyncio.sleep(0.2)  # the state lives in the network thread: nothing to wait on
    except TimeoutError:
        raise AssertionError(f"no {what} within {WAIT} s") from None


async def reaches(src: P2PTransport, dests: list[Inbox], tag: bytes) -> None:
    """Publish from ``src`` (again each round) until every inbox in ``dests`` has one of them."""
    n = 0

    async def publish() -> None:
        nonlocal n
        n += 1
        await src.publish(TOPIC, tag + b"-%d" % n)

    await until(lambda: all(d.has_from(src.peer_id, tag) for d in dests), f"delivery of {tag!r}", publish)


@asynccontextmanager
async def star(hub: P2PTransport, spokes: list[P2PTransport]) -> AsyncIterator[None]:
    """Start ``hub`` and ``spokes``; each spoke knows only the hub."""
    async with running(hub, *spokes):
        for t in spokes:
            await t.connect(hub.listen_addrs[0])
        yield


def connected(nodes: list[P2PTransport]) -> bool:
    """Whether the graph of ``nodes``' connections among themselves is connected."""
    ids = {t.peer_id for t in nodes}
    edges = {t.peer_id: set(t.peers()) & ids for t in nodes}
    seen, todo = set(), [nodes[0].peer_id]
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo += edges[p]
    return seen == ids


def total(nodes: list[P2PTransport], counter: str) -> int:
    return sum(t.counters.get(counter, 0) for t in nodes)


# -- the heal ---------------------------------------------------------------------


async def test_the_mesh_heals_without_its_bootstrap_when_it_leaves() -> None:
    (hub, _), *rest = [node() for _ in range(6)]
    spokes, inboxes = [t for t, _ in rest], [i for _, i in rest]
    async with star(hub, spokes):
        await reaches(hub, inboxes, b"from-hub")  # each spoke is in the hub's mesh
        assert all(t.peers() == [hub.peer_id] for t in spokes)
        await hub.stop()  # leaves the topic: a PRUNE naming the others to each mesh peer
        assert hub.counters.get("px_sent", 0) >= len(spokes)
        await until(lambda: connected(spokes) and all(hub.peer_id not in t.peers() for t in spokes), "healed mesh")
        await reaches(spokes[0], inboxes[1:], b"after-hub")
        assert total(spokes, "px_dials") >= len(spokes) // 2
        assert total(spokes, "px_ignored_sender") == total(spokes, "px_ignored_not_member") == 0


async def test_without_peer_exchange_the_same_star_falls_apart() -> None:
    (hub, _), *rest = [node(NO_PX) for _ in range(6)]
    spokes, inboxes = [t for t, _ in rest], [i for _, i in rest]
    async with star(hub, spokes):
        await reaches(hub, inboxes, b"from-hub")
        await hub.stop()
        await until(lambda: all(t.peers() == [] for t in spokes), "spokes noticing the hub left")
        for _ in range(int(QUIET / 0.5)):  # nothing may reconnect them
            await spokes[0].publish(TOPIC, b"alone")
            await asyncio.sleep(0.5)
        assert all(t.peers() == [] for t in spokes)
        assert not any(i.has_from(spokes[0].peer_id, b"alone") for i in inboxes[1:])
        assert hub.counters.get("px_sent", 0) == 0 and total(spokes, "px_dials") == 0


async def test_a_mesh_over_degree_high_prunes_with_px_and_spreads_while_the_hub_lives() -> None:
    small = dataclasses.replace(ALONE, degree=2, degree_low=1, degree_high=3)
    (hub, _), *rest = [node(small) for _ in range(7)]
    spokes = [t for t, _ in rest]
    async with star(hub, spokes):
        # the hub keeps 2 of its 6 mesh peers and prunes the others with PX at its next heartbeat
        await until(lambda: total([hub], "px_sent") >= 1 and total(spokes, "px_dials") >= 1, "PX on mesh overflow")
        await until(lambda: sum(len(set(t.peers()) - {hub.peer_id}) > 0 for t in spokes) >= 2, "spoke-to-spoke links")


# -- safety -----------------------------------------------------------------------


async def test_swarm_mode_never_dials_a_non_member_named_in_px() -> None:
    members: set[str] = set()
    (hub, _), (a, ia), (c, ic), (x, ix) = node(), node(ALONE, members.__contains__), node(NO_PX), node(NO_PX)
    members.update({hub.peer_id, c.peer_id})  # x is not a member for a
    async with star(hub, [a, c, x]):
        await reaches(hub, [ia, ic, ix], b"from-hub")
        await hub.stop()
        await until(lambda: a.counters.get("px_received", 0) >= 2, "PX at a")
        await until(lambda: c.peer_id in a.peers(), "a dialling the member c")
        assert a.counters.get("px_ignored_not_member", 0) == 1
        assert a.counters.get("px_accepted", 0) == 1
        await asyncio.sleep(QUIET)
        assert x.peer_id not in a.peers() and a.counters.get("px_dials", 0) == 1


async def test_swarm_mode_ignores_px_from_a_non_member() -> None:
    members: set[str] = set()
    (stranger, _), (a, ia), (c, ic) = node(), node(ALONE, members.__contains__), node(NO_PX)
    members.add(c.peer_id)  # the stranger (the hub here) is not a member for a; c is
    async with star(stranger, [a, c]):
        await reaches(stranger, [ia, ic], b"from-stranger")
        await stranger.stop()
        await until(lambda: a.counters.get("px_ignored_sender", 0) >= 1, "a ignoring the stranger's PX")
        await asyncio.sleep(QUIET)
        assert a.peers() == [] and a.counters.get("px_dials", 0) == 0 and a.counters.get("px_accepted", 0) == 0


async def test_a_swarm_hub_names_only_members_and_only_to_members() -> None:
    members: set[str] = set()
    (hub, _), *rest = node(ALONE, members.__contains__), node(NO_PX), node(NO_PX), node(NO_PX)
    (m1, m2, s), inboxes = [t for t, _ in rest], [i for _, i in rest]
    members.update({m1.peer_id, m2.peer_id})
    async with star(hub, [m1, m2, s]):
        await reaches(hub, inboxes, b"from-hub")  # s too is in the hub's mesh
        await hub.stop()
        await until(lambda: m1.counters.get("px_received", 0) >= 1 and m2.counters.get("px_received", 0) >= 1,
                    "PX at the members")
        await asyncio.sleep(0.5)
        assert m1.counters.get("px_received", 0) == m2.counters.get("px_received", 0) == 1  # each other, not s
        assert s.counters.get("px_received", 0) == 0
        assert hub.counters.get("px_sent", 0) == 2


async def test_the_dial_budget_caps_px_dials() -> None:
    tight = dataclasses.replace(ALONE, px_dial_budget=2, px_dial_window=600.0)
    (hub, _), (a, ia), *rest = node(), node(tight), *[node(NO_PX) for _ in range(4)]
    others = [t for t, _ in rest]
    async with star(hub, [a, *others]):
        await reaches(hub, [ia, *[i for _, i in rest]], b"from-hub")
        await hub.stop()
        await until(lambda: a.counters.get("px_received", 0) >= 4, "PX naming the four others")
        await until(lambda: a.counters.get("px_dials", 0) + a.counters.get("px_dial_failures", 0) >= 2, "PX dials")
        assert (a.counters.get("px_accepted", 0), a.counters.get("px_ignored_over_budget", 0)) == (2, 2)
        await asyncio.sleep(QUIET)
        assert len(a.peers()) == 2
        assert total(others, "px_ignored_disabled") >= 3  # they were sent PX too, and ignored it


# -- the policy, sans IO ----------------------------------------------------------


def policy(gate: Callable[[str], bool] | None = None, per_prune: int = 3, budget: int = 5) -> PxPolicy:
    return PxPolicy(me="me", max_per_prune=per_prune, budget=budget, window=60.0, gate=gate)


def test_policy_takes_named_peers_up_to_the_per_prune_cap() -> None:
    p = policy()
    plan = p.plan("s", ["a", "b", "c", "d", "e"], joined=True, connected=set(), now=0.0)
    assert plan.take == (0, 1, 2) and plan.ignored == {"excess": 2}
    assert p.pending == 3


def test_policy_skips_self_connected_pending_and_repeated_peers() -> None:
    p = policy(per_prune=10)
    first = p.plan("s", ["a"], joined=True, connected=set(), now=0.0)
    plan = p.plan("s", ["me", "b", "a", "c", "c", None], joined=True, connected={"b"}, now=1.0)
    assert first.take == (0,)
    assert plan.take == (3,) and plan.ignored == {"connected": 4, "bad_record": 1}
    p.done("a")
    assert p.plan("s", ["a"], joined=True, connected=set(), now=2.0).take == (0,)


def test_policy_ignores_a_topic_not_joined_and_a_sender_refused() -> None:
    p = policy(gate=lambda peer: peer != "stranger")
    assert p.plan("s", ["a", "b"], joined=False, connected=set(), now=0.0).ignored == {"not_joined": 2}
    assert p.plan("stranger", ["a"], joined=True, connected=set(), now=0.0).ignored == {"sender": 1}
    assert p.plan("s", ["a"], joined=True, connected=set(), now=0.0, sender_ok=False).ignored == {"sender": 1}
    plan = p.plan("s", ["stranger", "a"], joined=True, connected=set(), now=0.0)
    assert plan.take == (1,) and plan.ignored == {"not_member": 1}
    assert p.pending == 1


def test_policy_budget_holds_across_prunes_and_slides_with_time() -> None:
    p = policy(per_prune=10, budget=3)
    assert p.plan("s1", ["a", "b"], joined=True, connected=set(), now=0.0).take == (0, 1)
    plan = p.plan("s2", ["c", "d", "e"], joined=True, connected=set(), now=30.0)
    assert plan.take == (0,) and plan.ignored == {"over_budget": 2}
    assert p.plan("s3", ["f"], joined=True, connected=set(), now=59.9).ignored == {"over_budget": 1}
    assert p.plan("s3", ["f", "g", "h"], joined=True, connected=set(), now=60.0).take == (0, 1)  # a and b aged out


def test_policy_treats_a_raising_gate_as_a_refusal() -> None:
    def gate(peer: str) -> bool:
        raise ValueError(peer)

    assert policy(gate=gate).plan("s", ["a"], joined=True, connected=set(), now=0.0).ignored == {"sender": 1}


# -- the adapter's record checks, against a fake host -------------------------------


class _FakeHost:
    def __init__(self, key: Any) -> None:
        from libp2p.peer.id import ID

        self._id = ID.from_pubkey(key.public_key)
        self.dialled: list[tuple[str, list[str]]] = []
        self.consumed = 0

    def get_id(self) -> Any:
        return self._id

    def get_network(self) -> Any:
        return type("Net", (), {"connections": {}})()

    def get_peerstore(self) -> Any:
        host = self

        class Store:
            def consume_peer_record(self, envelope: Any, ttl: int) -> bool:
                host.consumed += 1
                return True

        return Store()

    async def connect(self, info: Any) -> None:
        self.dialled.append((info.peer_id.to_base58(), [str(a) for a in info.addrs]))


def _entry(named_key: Any, signer_key: Any | None, addrs: list[str]) -> Any:
    from libp2p.peer.envelope import seal_record
    from libp2p.peer.id import ID
    from libp2p.peer.peer_record import PeerRecord
    from libp2p.pubsub.pb import rpc_pb2
    from multiaddr import Multiaddr

    pid = ID.from_pubkey(named_key.public_key)
    entry = rpc_pb2.PeerInfo(peerID=pid.to_bytes())
    if signer_key is not None:
        record = PeerRecord(pid, [Multiaddr(a) for a in addrs])
        entry.signedPeerRecord = seal_record(record, signer_key.private_key).marshal_envelope()
    return entry


def test_px_records_must_be_signed_by_the_peer_they_name() -> None:
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID

    me, sender, honest, forged, bare, nowhere = (create_new_key_pair() for _ in range(6))
    host = _FakeHost(me)
    counters = Counters()
    px = PeerExchange(host, ALONE, counters, None, trio.Semaphore(2))
    entries = [
        _entry(honest, honest, ["/ip4/127.0.0.1/tcp/4001"]),
        _entry(forged, sender, ["/ip4/10.9.9.9/tcp/4001"]),  # names `forged`, signed by the sender
        _entry(bare, None, []),  # no record at all
        _entry(nowhere, nowhere, ["/ip4/127.0.0.1/tcp/4002/p2p-circuit"]),  # no direct address
    ]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            px.attach(nursery)
            px.on_prune(ID.from_pubkey(sender.public_key), entries, joined=True, sender_ok=True)

    trio.run(main)
    assert host.dialled == [(ID.from_pubkey(honest.public_key).to_base58(), ["/ip4/127.0.0.1/tcp/4001"])]
    snap = counters.snapshot()
    assert (snap["px_received"], snap["px_accepted"], snap["px_dials"], snap["px_ignored_bad_record"]) == (4, 1, 1, 3)
    assert host.consumed == 1 and px.policy.pending == 0


# -- config, and what the adjustment rests on ---------------------------------------


def test_px_config_reaches_the_transport_and_is_bounded() -> None:
    from edgenode.cli._run import p2p_config
    from edgenode.config import CONFIG_TEMPLATE, NetSection, NodeConfig

    c = p2p_config(NodeConfig(net=NetSection(peer_exchange=False, px_peers=4)))
    assert (c.peer_exchange, c.px_peers) == (False, 4)
    d = p2p_config(NodeConfig())
    assert (d.peer_exchange, d.px_peers) == (True, 8)
    for bad in (0, 33):
        with pytest.raises(LocalError, match="px_peers"):
            NetSection(px_peers=bad)
    assert "# peer_exchange = true" in CONFIG_TEMPLATE and "# px_peers = 8" in CONFIG_TEMPLATE


def test_py_libp2p_px_paths_are_where_edge_gossipsub_overrides_them() -> None:
    from libp2p.pubsub.gossipsub import GossipSub

    assert "await self.handle_prune(prune, sender_peer_id)" in inspect.getsource(GossipSub.handle_rpc)
    assert "self._do_px(" in inspect.getsource(GossipSub.handle_prune)  # what the override keeps from running
    assert "await self.emit_prune(topic, peer, self.do_px, True)" in inspect.getsource(GossipSub.leave)
    assert "self.mesh_heartbeat()" in inspect.getsource(GossipSub.heartbeat)
    assert "await self._emit_control_msgs(" in inspect.getsource(GossipSub.heartbeat)
    assert list(inspect.signature(GossipSub.emit_prune).parameters) == [
        "self", "topic", "to_peer", "do_px", "is_unsubscribe"]
    assert list(inspect.signature(GossipSub._emit_control_msgs).parameters) == [
        "self", "peers_to_graft", "peers_to_prune", "peers_to_gossip"]
    assert list(inspect.signature(GossipSub._add_back_off).parameters)[:4] == [
        "self", "peer", "topic", "is_unsubscribe"]
    assert "backoff_check" in inspect.signature(GossipSub._get_in_topic_gossipsub_peers_from_minus).parameters
