"""Beyond the LAN: DHT lookups in a 30-node loopback swarm; connections across real NATs.

    python benchmarks/bench_nat.py [--nodes 30] [--lookups 40] [--attempts 20] [--tasks 30] [--skip-nat]
                                   [--only dht|connect|task]

1. ``dht.find_peer_ms`` / ``dht.find_providers_ms`` (p50, p99): ``--nodes`` net.p2p
   transports in this process on 127.0.0.1, each bootstrapped from node 0 only; lookups from
   random nodes for random peers / for blobs announced by random nodes.
2. Across NATs (tests/nat/_netns.py: relay in a public namespace, two homes behind
   endpoint-independent MASQUERADE routers; needs root and iptables, else a note on stderr
   and nothing printed): ``nat.connect_ms`` p50/p99 for ``direct`` (home -> public relay)
   and ``relayed`` (a fresh home-A node on its own port each attempt -> home B through the
   relay), ``nat.holepunch_success_ratio`` (relayed connections that DCUtR upgraded to
   direct within 10 s, over ``--attempts``), and ``nat.connect_ms`` for ``holepunched``
   (from the relayed dial to the punched connection) when any succeeded.
3. ``nat.task_e2e_p99_ms`` (and p50): a light submitter in home A (``Submitter`` on its own
   transport, as ``edgenode submit``) runs ``--tasks`` WASM tasks (the cat task, 64 bytes in
   and out) on a node with a sandbox in home B (``build_runtime``, as ``edgenode run``), over
   the relay node in the public namespace; submit to verified receipt, on the connection the
   first task opened (not counted: its time is ``first_ms``).  Home B is endpoint-independent
   (``--task-nat symmetric`` for the other kind).  With the endpoint-independent pair the timed
   tasks wait (up to 20 s) for DCUtR's punched connection; ``kind`` is the connection the timed
   tasks ran on (``holepunched`` or ``relayed``; "X, then Y" when it changed during them).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import emit, load_avg, percentile
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
        params = {"nodes": n, "lookups": lookups, "bootstrap": "node 0 only", "where": "127.0.0.1, one process",
                  "load": load_avg()}
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
        b = Agent(topo, "home_b", "--listen", "/ip4/0.0.0.0/tcp/4001", "--bootstrap", relay.addrs[0])
        agents.append(b)
        deadline = time.monotonic() + 60
        while not b.call("state")["relays"] and time.monotonic() < deadline:
            time.sleep(0.5)
        circuit = f"{relay.addrs[0]}/p2p-circuit/p2p/{b.peer_id}"
        direct: list[float] = []
        relayed: list[float] = []
        punched: list[float] = []
        failures: list[str] = []
        for i in range(attempts):
            end = time.monotonic() + 30  # home B holds a slot on the relay (retaken if its connection dropped)
            while not b.call("state")["relays"] and time.monotonic() < end:
                time.sleep(0.25)
            # a fresh home-A node on its own port each time: a punched connection's ports
            # (A's listen port <-> B's) stay in TIME_WAIT for 60 s once it closes (docs/net.md)
            a = Agent(topo, "home_a", "--listen", f"/ip4/0.0.0.0/tcp/{4101 + i}")
            try:
                t0 = time.perf_counter()
                if not a.call("connect", addr=relay.addrs[0])["ok"]:
                    continue
                direct.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                reply = a.call("connect", addr=circuit)
                if not reply["ok"]:
                    failures.append(reply["error"])
                    continue
                relayed.append((time.perf_counter() - t0) * 1000)
                end = time.monotonic() + 10
                while time.monotonic() < end:
                    if a.call("kinds")["kinds"].get(b.peer_id) == "holepunched":
                        punched.append((time.perf_counter() - t0) * 1000)
                        break
                    time.sleep(0.25)
            finally:
                a.close()
        for err in failures:
            print(f"bench_nat: relayed dial failed: {err}", file=sys.stderr)
        params = {"nat": "endpoint-independent (MASQUERADE)", "transport": "tcp", "where": "network namespaces",
                  "load": load_avg()}
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


def task_across_nats(tasks: int, nat_b: str) -> None:
    from tests.nat._drive import Agent
    from tests.nat._netns import PUBLIC_IP, Topology, unavailable

    why = unavailable()
    if why is not None:
        print(f"bench_nat: task figures skipped: {why}", file=sys.stderr)
        return
    topo = Topology.create("eim", nat_b)
    agents: list[Agent] = []
    try:
        relay = Agent(topo, "public", "--listen", f"/ip4/{PUBLIC_IP}/tcp/4001", "--relay", "--node")
        agents.append(relay)
        a = Agent(topo, "home_a", "--listen", "/ip4/0.0.0.0/tcp/4001", "--bootstrap", relay.addrs[0])
        b = Agent(topo, "home_b", "--listen", "/ip4/0.0.0.0/tcp/4001", "--bootstrap", relay.addrs[0], "--node",
                  "--wasm")
        agents += [a, b]
        deadline = time.monotonic() + 90
        while not b.call("state")["relays"] and time.monotonic() < deadline:
            time.sleep(0.5)
        first = a.call("submit", data="x" * 64, timeout=120)
        while not first["ok"] and "NoExecutor" in first["error"] and time.monotonic() < deadline:
            time.sleep(1.0)  # the relay node has not got home B's advert yet
            first = a.call("submit", data="x" * 64, timeout=120)
        if not first["ok"]:
            print(f"bench_nat: no task across the NATs: {first['error']}", file=sys.stderr)
            return
        kind = a.call("kinds")["kinds"].get(b.peer_id, "none")
        end = time.monotonic() + 20.0  # an endpoint-independent pair: time the punched connection
        while nat_b == "eim" and kind != "holepunched" and time.monotonic() < end:
            time.sleep(0.5)
            kind = a.call("kinds")["kinds"].get(b.peer_id, "none")
        samples: list[float] = []
        failed = 0
        for i in range(tasks):
            data = f"{i:064d}"
            reply = a.call("submit", data=data, timeout=120)
            if reply["ok"] and reply["output"] == data and reply["receipts"] == [b.peer_id]:
                samples.append(reply["ms"])
            else:
                failed += 1
        if not samples:
            print("bench_nat: every task across the NATs failed", file=sys.stderr)
            return
        after = a.call("kinds")["kinds"].get(b.peer_id, "none")
        ran_on = kind if after == kind else f"{kind}, then {after}"
        params = {"kind": ran_on, "nat_a": "endpoint-independent", "nat_b": nat_b, "tasks": len(samples),
                  "failed": failed, "first_ms": round(first["ms"], 1), "task": "cat.wat, 64 B in/out",
                  "where": "network namespaces", "load": load_avg()}
        emit("nat.task_e2e_p99_ms", round(percentile(samples, 99), 2), "ms", **params)
        emit("nat.task_e2e_p50_ms", round(percentile(samples, 50), 2), "ms", **params)
    finally:
        for ag in agents:
            ag.close()
        topo.close()


def main() -> None:
    # py-libp2p logs every DHT stream a lookup abandons at WARNING: thousands of lines per run
    logging.getLogger("libp2p.kad_dht.kad_dht").setLevel(logging.ERROR)
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=30)
    ap.add_argument("--lookups", type=int, default=40)
    ap.add_argument("--attempts", type=int, default=20)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--task-nat", choices=["eim", "symmetric"], default="eim")
    ap.add_argument("--skip-nat", action="store_true")
    ap.add_argument("--only", choices=["dht", "connect", "task"], default=None)
    args = ap.parse_args()
    if args.only in (None, "dht"):
        asyncio.run(dht_swarm(args.nodes, args.lookups))
    if not args.skip_nat and args.only in (None, "connect"):
        across_nats(args.attempts)
    if not args.skip_nat and args.only in (None, "task"):
        task_across_nats(args.tasks, args.task_nat)


if __name__ == "__main__":
    main()
