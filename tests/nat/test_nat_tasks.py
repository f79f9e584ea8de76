"""The task path across NATs: a light submitter in home A runs a WASM task on a node in home B.

The public namespace runs a whole node as relay and bootstrap (``edgenode run --relay``, no
sandbox); home B runs a node with a sandbox (``edgenode run``), home A a light submitter on its
own transport (``edgenode submit``).  Home A reaches home B by its peer id, over the relay
(py-libp2p 0.8.1's hole punch does not succeed through these NATs: docs/net.md).  Slow; root.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.nat._drive import Agent
from tests.nat._netns import PUBLIC_IP, Topology, unavailable

pytestmark = [pytest.mark.slow, pytest.mark.integration]

WHY = unavailable()
if WHY is not None:
    pytest.skip(f"no NAT topology here: {WHY}", allow_module_level=True)

WAIT = 90.0


@contextmanager
def homes(topo: Topology) -> Iterator[tuple[Agent, Agent, Agent]]:
    """(relay node, light submitter in home A, executor node in home B)."""
    agents: list[Agent] = []
    try:
        relay = Agent(topo, "public", "--listen", f"/ip4/{PUBLIC_IP}/tcp/4001", "--relay", "--node")
        agents.append(relay)
        agents.append(Agent(topo, "home_a", "--listen", "/ip4/0.0.0.0/tcp/4001", "--bootstrap", relay.addrs[0]))
        agents.append(Agent(topo, "home_b", "--listen", "/ip4/0.0.0.0/tcp/4001", "--bootstrap", relay.addrs[0],
                            "--node", "--wasm"))
        yield relay, agents[1], agents[2]
    finally:
        for a in agents:
            a.close()


def submit_when_advertised(a: Agent, data: str) -> dict[str, Any]:
    """Submit once the relay node holds home B's advert (NoExecutor until then; bounded)."""
    deadline = time.monotonic() + WAIT
    while True:
        reply = a.call("submit", data=data, timeout=WAIT)
        if reply["ok"] or "NoExecutor" not in reply["error"] or time.monotonic() > deadline:
            return reply
        time.sleep(1.0)


@pytest.mark.parametrize("nat_b", ["eim", "symmetric"])
def test_a_submitter_in_one_home_gets_a_verified_receipt_from_a_node_in_the_other(nat_b: str) -> None:
    topo = Topology.create("eim", nat_b)
    try:
        with homes(topo) as (relay, a, b):
            deadline = time.monotonic() + WAIT
            while not b.call("state")["relays"]:  # home B holds a slot on the relay
                assert time.monotonic() < deadline, "home B got no relay reservation within the wait"
                time.sleep(0.5)
            assert b.call("state")["reachability"] == "private"
            circuit = f"{relay.addrs[0]}/p2p-circuit/p2p/{b.peer_id}"
            found = a.call("find_peer", peer=b.peer_id, timeout=WAIT)  # by peer id, through the DHT
            while circuit not in found["addrs"] and time.monotonic() < deadline:
                time.sleep(0.5)  # B's new address reaches the DHT by identify push, a moment after its slot
                found = a.call("find_peer", peer=b.peer_id, timeout=WAIT)
            assert circuit in found["addrs"]
            reply = submit_when_advertised(a, "hello across two NATs")
            assert reply["ok"], reply
            assert reply["status"] == "ok"
            assert reply["output"] == "hello across two NATs"
            assert reply["executor"] == b.peer_id
            assert reply["receipts"] == [b.peer_id]  # verified receipts only reach the outcome
            assert a.call("kinds")["kinds"][b.peer_id] == "relayed"
            assert a.call("state")["counters"]["relay_dials"] >= 1
            again = a.call("submit", data="second", timeout=WAIT)  # the relayed connection is reused
            assert again["ok"], again
            assert again["output"] == "second"
    finally:
        topo.close()
