"""Beyond the LAN: DHT lookups in a 30-node loopback swarm; connections across real NATs.

    python benchmarks/bench_nat.py [--nodes 30] [--lookups 40] [--attempts 20] [--skip-nat]

1. ``dht.find_peer_ms`` / ``dht.find_providers_ms`` (p50, p99): ``--nodes`` net.p2p
   transports in this process on 127.0.0.1, each bootstrapped from node 0 only; lookups from
   random nodes for random peers / for blobs announced by random nodes.
2. Across NATs (tests/nat/_netns.py: relay in a public namespace, two homes behind
   endpoint-independent MASQUERADE routers; needs root and iptables, else a note on stderr
   and nothing printed): ``nat.connect_ms`` p50/p99 for ``direct`` (home -> public relay)
   and ``relayed`` (home A -> home B through the relay, after the relay connection is
   dropped each time), ``nat.holepunch_success_ratio`` (relayed connections that DCUtR
   upgraded to direct within 10 s, over ``--attempts``), and ``nat.connect_ms`` for
   ``holepunched`` when any succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import emit, percentile
from edgenode.identity import Identity
from edgenode.net.p2p import P2PConfig, P2PTransport

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


async def dht_swarm(n: int, lookups: int) -> None:
    config = P2PConfig(dht_query_timeout=10.0, autonat=False, nat_traversal=False, holepunch=False)
    nodes = [P2PTransport(Identity.generate(), listen=LOOPBACK, config=config) for _ in range(n)]
    rng = random.Random(16)
    try:
        for t in nodes:
            await t.start()
        for t in nodes[1:]:
            await t.connect(nodes[0].listen_addrs[0])
        async with asyncio.timeout(120):
            while True:  # the routing tables fill in the network thread: nothing to wait on but a poll
                if min([await t.dht_table_size() for t in nodes]) >= 1:
                    break
                await asyncio.sleep(0.2)
        find_peer: list[float] = []
        misses = 0
        for _ in range(lookups):
            a, b = rng.sample(nodes, 2)
            t0 = time.perf_counter()
            addrs = await a.find_peer(b.peer_id)
            find_peer.append((time.perf_counter() - t0) * 1000)
            misses += not addrs
        providers: list[float] = []
        pmiss = 0
        for i in range(lookups):
            digest = hashlib.sha256(f"blob-{i}".encode()).hexdigest()
            holder, seeker = rng.sample(nodes, 2)
            await holder.provide(digest)
            t0 = time.perf_counter()
            found = await seeker.find_providers(digest)
            providers.append((time.perf_counter() - t0) * 1000)
            pmiss += holder.peer_id not in found
        params = {"nodes": n, "lookups": lookups, "bootstrap": "node 0 only", "where": "127.0.0.1, one process"}
        for q, tag in ((50, "p50"), (99, "p99")):
            emit("dht.find_peer_ms", round(percentile(find_peer, q), 2), "ms", percentile=tag, misses=misses, **params)
            emit("dht.find_providers_ms", round(percentile(providers, q), 2), "ms", percentile=tag, misses=pmiss,
                 **params)
    finally:
        for t in nodes:
            await t.stop()


def across_nats(attempts: int) -> None:
    from tests.nat._drive import Agent
    from tests.nat._netns import PUBLIC_IP, Topology, unavailable

    why = unavailable()
    if why is not None:
        print(f"bench_nat: NAT figures skipped: {why}", file=sys.stderr)
        return
    topo = Topology.create("eim", "eim")
    agents: list[Agent] = []
    try:
        relay = Agent(topo, "public", "--listen", f"/ip4/{PUBLIC_IP}/tcp/4001", "--relay")
        agents.append(relay)
        a = Agent(topo, "home_a", "--listen", "/ip4/0.0.0.0/tcp/4001")
        b = Agent(topo, "home_b", "--listen", "/ip4/0.0.0.0/tcp/4001", "--bootstrap", relay.addrs[0])
        agents += [a, b]
        direct: list[float] = []
        t0 = time.perf_counter()
        a.call("connect", addr=relay.addrs[0])
        direct.append((time.perf_counter() - t0) * 1000)
        deadline = time.monotonic() + 60
        while not (a.call("state")["relays"] and b.call("state")["relays"]) and time.monotonic() < deadline:
            time.sleep(0.5)
        circuit = f"{relay.addrs[0]}/p2p-circuit/p2p/{b.peer_id}"
        relayed: list[float] = []
        punched: list[float] = []
        for _ in range(attempts):
            a.call("drop", peer=b.peer_id)
            a.call("drop", peer=relay.peer_id)
            t0 = time.perf_counter()
            if a.call("connect", addr=relay.addrs[0])["ok"]:
                direct.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            reply = a.call("connect", addr=circuit)
            if not reply["ok"]:
                continue
            relayed.append((time.perf_counter() - t0) * 1000)
            end = time.monotonic() + 10
            while time.monotonic() < end:
                if a.call("kinds")["kinds"].get(b.peer_id) == "holepunched":
                    punched.append((time.perf_counter() - t0) * 1000)
                    break
                time.sleep(0.25)
        params = {"nat": "endpoint-independent (MASQUERADE)", "transport": "tcp", "where": "network namespaces"}
        emit("nat.holepunch_success_ratio", round(len(punched) / max(1, len(relayed)), 3), "ratio",
             attempts=len(relayed), **params)
        for kind, samples in (("direct", direct), ("relayed", relayed), ("holepunched", punched)):
            if not samples:
                print(f"bench_nat: no {kind} connection to time", file=sys.stderr)
                continue
            for q, tag in ((50, "p50"), (99, "p99")):
                emit("nat.connect_ms", round(percentile(samples, q), 2), "ms", kind=kind, percentile=tag,
                     samples=len(samples), **params)
    finally:
        for ag in agents:
            ag.close()
        topo.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=30)
    ap.add_argument("--lookups", type=int, default=40)
    ap.add_argument("--attempts", type=int, default=20)
    ap.add_argument("--skip-nat", action="store_true")
    args = ap.parse_args()
    asyncio.run(dht_swarm(args.nodes, args.lookups))
    if not args.skip_nat:
        across_nats(args.attempts)


if __name__ == "__main__":
    main()
