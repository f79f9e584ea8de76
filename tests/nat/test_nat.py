"""Nodes behind real NATs (Linux network namespaces, veth pairs, iptables masquerading).

A relay+bootstrap node in a "public" namespace; two homes behind their own NAT routers
(tests/nat/_netns.py).  Slow (real dials, DHT lookups with timeouts): ``make test-slow``.
Skips with the reason where namespaces cannot be made (not root, no iptables).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.nat._drive import Agent
from tests.nat._netns import PUBLIC_IP, Topology, unavailable

pytestmark = [pytest.mark.slow, pytest.mark.integration]

WHY = unavailable()
if WHY is not None:
    pytest.skip(f"no NAT topology here: {WHY}", allow_module_level=True)

WAIT = 60.0


@contextmanager
def swarm(topo: Topology) -> Iterator[tuple[Agent, Agent, Agent]]:
    agents: list[Agent] = []
    try:
        relay = Agent(topo, "public", "--listen", f"/ip4/{PUBLIC_IP}/tcp/4001", "--relay")
        agents.append(relay)
        for home in ("home_a", "home_b"):
            agents.append(Agent(topo, home, "--listen", "/ip4/0.0.0.0/tcp/4001", "--bootstrap", relay.addrs[0]))
        yield relay, agents[1], agents[2]
    finally:
        for a in agents:
            a.close()


def reserved(*homes: Agent) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if all(h.call("state")["relays"] for h in homes):
            return
        time.sleep(0.5)
    raise AssertionError("no relay reservation within the wait")


@pytest.fixture(params=["eim", "symmetric"])
def topo(request: pytest.FixtureRequest) -> Iterator[Topology]:
    t = Topology.create("eim", request.param)
    try:
        yield t
    finally:
        t.close()


def test_a_home_finds_the_other_by_id_and_reaches_it_through_the_relay(topo: Topology) -> None:
    with swarm(topo) as (relay, a, b):
        reserved(a, b)
        sa, sb = a.call("state"), b.call("state")
        assert sa["reachability"] == sb["reachability"] == "private"
        assert relay.call("state")["reachability"] == "public"
        assert sb["relays"] == [relay.peer_id]
        circuit = f"{relay.addrs[0]}/p2p-circuit/p2p/{b.peer_id}"
        found = a.call("find_peer", peer=b.peer_id, timeout=WAIT)
        deadline = time.monotonic() + WAIT
        while circuit not in found["addrs"] and time.monotonic() < deadline:
            time.sleep(0.5)  # B's new address reaches the DHT by identify push, a moment after its slot
            found = a.call("find_peer", peer=b.peer_id, timeout=WAIT)
        assert circuit in found["addrs"]
        reply = a.call("request", peer=b.peer_id, data="across two NATs", timeout=WAIT)
        assert reply["ok"], reply
        assert reply["data"] == "across two NATs"
        assert a.call("kinds")["kinds"][b.peer_id] in ("relayed", "holepunched")
        assert a.call("state")["counters"]["relay_dials"] >= 1
        # a blob, from a provider found through the DHT
        assert b.call("provide")["provided"]
        assert a.call("find_providers", digest=b.blob)["providers"] == [b.peer_id]
        assert a.call("fetch", peer=b.peer_id, digest=b.blob)["sha256"] == b.blob


def test_the_symmetric_home_stays_on_the_relay() -> None:
    t = Topology.create("eim", "symmetric")
    try:
        with swarm(t) as (_relay, a, b):
            reserved(a, b)
            assert a.call("request", peer=b.peer_id, data="x", timeout=WAIT)["ok"]
            time.sleep(10.0)  # DCUtR's attempts (three rounds) are over by now
            assert a.call("kinds")["kinds"][b.peer_id] == "relayed"
            assert a.call("request", peer=b.peer_id, data="still", timeout=WAIT)["data"] == "still"
    finally:
        t.close()


def until_kind(a: Agent, peer: str, kind: str) -> str:
    """Poll ``a``'s connection kind to ``peer`` until it is ``kind`` or the wait ends; the last one seen."""
    seen = "none"
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        seen = a.call("kinds")["kinds"].get(peer, "none")
        if seen == kind:
            break
        time.sleep(0.5)
    return seen


def test_two_endpoint_independent_homes_hole_punch_and_outlive_the_relay() -> None:
    t = Topology.create("eim", "eim")
    try:
        with swarm(t) as (relay, a, b):
            reserved(a, b)
            first = a.call("request", peer=b.peer_id, data="x", timeout=WAIT)
            assert first["ok"], first
            assert until_kind(a, b.peer_id, "holepunched") == "holepunched"
            assert until_kind(b, a.peer_id, "holepunched") == "holepunched"
            relay.proc.kill()  # the relay dies: its circuits go with it, the punched connection stays
            relay.proc.wait(20)
            deadline = time.monotonic() + WAIT
            while relay.peer_id in a.call("state")["peers"] and time.monotonic() < deadline:
                time.sleep(0.5)
            assert relay.peer_id not in a.call("state")["peers"]
            reply = a.call("request", peer=b.peer_id, data="without the relay", timeout=WAIT)
            assert reply["ok"], reply
            assert reply["data"] == "without the relay"
            assert a.call("kinds")["kinds"][b.peer_id] == "holepunched"
    finally:
        t.close()


def test_a_home_that_loses_its_relay_connection_dials_it_again_and_takes_a_new_slot() -> None:
    t = Topology.create("eim", "eim")
    try:
        with swarm(t) as (relay, a, b):
            reserved(b)
            assert b.call("drop", peer=relay.peer_id)["ok"]  # as when py-libp2p drops the connection
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                counters = b.call("state")["counters"]
                if counters.get("relay_redials") and b.call("state")["relays"]:
                    break
                time.sleep(0.5)
            state = b.call("state")
            assert state["relays"] == [relay.peer_id], state
            assert state["counters"]["relay_reservations_lost"] >= 1
            circuit = f"{relay.addrs[0]}/p2p-circuit/p2p/{b.peer_id}"
            reply = a.call("connect", addr=circuit)
            assert reply["ok"], reply
    finally:
        t.close()
