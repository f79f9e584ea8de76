"""Figures of the real libp2p transport (edgenode.net.p2p) on 127.0.0.1.

* ``net.gossip_p50_ms`` / ``net.gossip_p99_ms``: time from publish to delivery at each
  other host, over all (message, receiver) pairs, for 10/25/50 hosts, all in one
  process or spread over several (``processes``).  Hosts run in peer processes
  (``tests/integration/_p2p_peer.py --hosts K``); each dials 3 others.
* ``net.request_rtt_p99_ms`` (p50 in params): 64-byte echo requests between two hosts.
* ``net.blob_1mib_ms``: median time to fetch and verify a 1 MiB blob from a connected peer.

    python benchmarks/bench_net_p2p.py           # full run, a few minutes on 2 cores
    python benchmarks/bench_net_p2p.py --quick   # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO))

from _common import emit, median, percentile  # noqa: E402
from _p2p_peer import PeerProcess  # noqa: E402

from edgenode.identity import Identity  # noqa: E402
from edgenode.net import MemoryBlobStore  # noqa: E402
from edgenode.net.p2p import P2PTransport  # noqa: E402

DEGREE_DIALS = 3
MESSAGE_WAIT = 15.0


async def gossip_figures(nodes: int, processes: int, messages: int, seed: int) -> None:
    rng = random.Random(seed)
    per = [nodes // processes + (1 if i < nodes % processes else 0) for i in range(processes)]
    procs = await asyncio.gather(
        *(PeerProcess.spawn(rng.randbytes(32), "--hosts", str(k), "--blob-bytes", "0") for k in per)
    )
    hosts: list[tuple[PeerProcess, int, str, str]] = [
        (p, k, str(info["peer_id"]), str(info["addrs"][0])) for p in procs for k, info in enumerate(p.info)
    ]
    deliveries: dict[str, dict[str, float]] = {}
    complete: dict[str, tuple[set[str], asyncio.Event]] = {}
    index = {(id(p), k): pid for p, k, pid, _ in hosts}

    def on_event(proc: PeerProcess) -> Any:
        def record(ev: dict[str, Any]) -> None:
            if ev.get("event") == "gossip":
                got = deliveries.setdefault(ev["data"], {})
                got[index[(id(proc), ev["host"])]] = float(ev["t"])
                waiter = complete.get(ev["data"])
                if waiter is not None and waiter[0] <= set(got):
                    waiter[1].set()

        return record

    for p in procs:
        p.on_event = on_event(p)
    try:
        # a connected random graph: host i dials one earlier host, plus a few random others
        dials: set[tuple[int, int]] = set()
        for i in range(1, len(hosts)):
            dials.add((i, rng.randrange(i)))
            for j in rng.sample(range(len(hosts)), min(DEGREE_DIALS - 1, len(hosts) - 1)):
                if j != i and (j, i) not in dials:
                    dials.add((i, j))
        gate = asyncio.Semaphore(8)

        async def dial(i: int, j: int) -> None:
            proc, k, _, _ = hosts[i]
            async with gate:
                reply = await proc.call("connect", host=k, addr=hosts[j][3])
            if not reply["ok"]:
                raise RuntimeError(f"dial failed: {reply}")

        await asyncio.gather(*(dial(i, j) for i, j in sorted(dials)))

        async def one(m: int, data: bytes, wait: float) -> tuple[float, dict[str, float]]:
            proc, k, pid, _ = hosts[m % len(hosts)]
            want = {h[2] for h in hosts} - {pid}
            done = asyncio.Event()
            complete[data.hex()] = (want, done)
            t0 = time.time()
            reply = await proc.call("publish", host=k, data=data.hex())
            assert reply["ok"], reply
            with contextlib.suppress(TimeoutError):  # missing deliveries are reported, not fatal
                await asyncio.wait_for(done.wait(), wait)
            del complete[data.hex()]
            return t0, deliveries.get(data.hex(), {})

        # warm-up: until one message reaches everyone (the mesh has formed), bounded
        warm_deadline = time.monotonic() + 60
        w = 0
        while time.monotonic() < warm_deadline:
            w += 1
            _, got = await one(0, b"warm-up-%d" % w, 2.0)
            if len(got) >= len(hosts) - 1:
                break
        lat: list[float] = []
        expected = 0
        for m in range(messages):
            t0, got = await one(m, b"bench-%d-%d" % (seed, m), MESSAGE_WAIT)
            expected += len(hosts) - 1
            lat.extend((t - t0) * 1000 for t in got.values())
            await asyncio.sleep(0.05)
        if not lat:
            raise RuntimeError("no gossip delivered")
        params = {
            "transport": "libp2p",
            "nodes": nodes,
            "processes": processes,
            "messages": messages,
            "delivered": round(len(lat) / expected, 4),
            "dials": len(dials),
        }
        emit("net.gossip_p50_ms", round(percentile(lat, 50), 2), "ms", **params)
        emit("net.gossip_p99_ms", round(percentile(lat, 99), 2), "ms", **params)
    finally:
        await asyncio.gather(*(p.stop() for p in procs))


async def request_and_blob_figures(requests: int, blobs: int) -> None:
    a = P2PTransport(Identity.generate(), listen=["/ip4/127.0.0.1/tcp/0"])
    b = P2PTransport(Identity.generate(), listen=["/ip4/127.0.0.1/tcp/0"])

    async def echo(_sender: str, data: bytes) -> bytes:
        return data

    store = MemoryBlobStore()
    digest = store.put(os.urandom(1 << 20))
    b.serve("/bench/echo/1", echo)
    b.serve_blobs(store)
    await a.start()
    await b.start()
    try:
        await a.connect(b.listen_addrs[0])
        payload = os.urandom(64)
        for _ in range(10):  # warm-up
            await a.request(b.peer_id, "/bench/echo/1", payload)
        rtt = []
        for _ in range(requests):
            t0 = time.perf_counter()
            await a.request(b.peer_id, "/bench/echo/1", payload)
            rtt.append((time.perf_counter() - t0) * 1000)
        emit(
            "net.request_rtt_p99_ms",
            round(percentile(rtt, 99), 2),
            "ms",
            transport="libp2p",
            p50_ms=round(percentile(rtt, 50), 2),
            requests=requests,
            payload_bytes=len(payload),
            processes=1,
        )
        times = []
        for _ in range(blobs):
            t0 = time.perf_counter()
            await a.fetch_blob(b.peer_id, digest)
            times.append((time.perf_counter() - t0) * 1000)
        emit("net.blob_1mib_ms", round(median(times), 2), "ms", transport="libp2p", fetches=blobs, processes=1)
    finally:
        await a.stop()
        await b.stop()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    args = ap.parse_args()
    if args.quick:
        await request_and_blob_figures(requests=50, blobs=3)
        for procs in (1, 2):
            await gossip_figures(10, procs, messages=5, seed=1)
        return
    await request_and_blob_figures(requests=300, blobs=10)
    for nodes in (10, 25, 50):
        for procs in (1, 2):
            await gossip_figures(nodes, procs, messages=20 if nodes < 50 else 12, seed=nodes * 10 + procs)


if __name__ == "__main__":
    asyncio.run(main())
