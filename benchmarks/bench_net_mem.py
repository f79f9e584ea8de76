"""memnet figures: gossip delivery time over a simulated mesh, request round trips, blob transfer.

Gossip delivery times are simulated times (the network's clock: link delays along
the path each copy took), measured per (message, receiving node) for messages
published from random nodes over a random topology (each node dials ``k``
peers); processing cost shows in the wall time (which includes waiting out the
last lazy-gossip heartbeat) and the CPU time per message, reported beside them.
Request round trips are measured on the event loop's clock (link delays plus
the Python cost of memnet itself).

    python benchmarks/bench_net_mem.py            # full run (about a minute on 2 cores)
    python benchmarks/bench_net_mem.py --quick    # smoke run (a few seconds)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, percentile

from edgenode.net import MemoryBlobStore
from edgenode.net.memnet import Delivery, LinkSpec, MemNetwork

LATENCY_MS = 20.0
JITTER_MS = 5.0
DEGREE = 6
DIAL_K = 4
HEARTBEAT_S = 1.0


async def gossip(nodes_n: int, messages: int, seed: int) -> None:
    wall0 = time.perf_counter()
    link = LinkSpec(latency_ms=LATENCY_MS, jitter_ms=JITTER_MS)
    net = MemNetwork(seed, default_link=link, gossip_degree=DEGREE, heartbeat_s=HEARTBEAT_S)
    nodes = [net.add_node(f"n{i}") for i in range(nodes_n)]
    for t in nodes:
        await t.start()
        t.subscribe("bench")
    net.connect_random(DIAL_K)
    log: list[Delivery] = []
    net.add_observer(log.append)
    rng = random.Random(seed)
    setup_s = time.perf_counter() - wall0
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(messages):
        await rng.choice(nodes).publish("bench", b"m%06d" % i + bytes(200))
    await net.drain(timeout=600)
    run_s = time.perf_counter() - t0
    cpu_s = time.process_time() - cpu0
    lat = [(d.delivered_at - d.published_at) * 1000.0 for d in log]
    last: dict[tuple[str, int], float] = {}
    for d, ms in zip(log, lat, strict=True):
        key = (d.origin, d.seqno)
        last[key] = max(last.get(key, 0.0), ms)
    params = {
        "transport": "mem",
        "nodes": nodes_n,
        "processes": 1,
        "messages": messages,
        "latency_ms": LATENCY_MS,
        "jitter_ms": JITTER_MS,
        "degree": DEGREE,
        "dial_k": DIAL_K,
        "heartbeat_s": HEARTBEAT_S,
    }
    emit("net.gossip_p50_ms", round(percentile(lat, 50), 3), "ms", **params)
    emit("net.gossip_p99_ms", round(percentile(lat, 99), 3), "ms", **params)
    emit("net.gossip_all_p99_ms", round(percentile(list(last.values()), 99), 3), "ms", **params)
    emit("net.gossip_coverage", round(len(log) / (messages * (nodes_n - 1)), 6), "fraction", **params)
    emit("net.gossip_max_hops", max(d.hops for d in log), "hops", **params)
    emit("net.gossip_wall_s", round(run_s, 3), "s", setup_s=round(setup_s, 3), **params)
    emit("net.gossip_cpu_ms_per_msg", round(cpu_s * 1000.0 / messages, 3), "ms", **params)
    for t in nodes:
        await t.stop()


async def request_rtt(latency_ms: float, count: int) -> None:
    net = MemNetwork(1, default_link=LinkSpec(latency_ms=latency_ms))
    a, b = net.add_node("a"), net.add_node("b")
    await a.start()
    await b.start()

    async def echo(_sender: str, data: bytes) -> bytes:
        return data

    b.serve("/bench/echo/1", echo)
    net.wire("a", "b")
    loop = asyncio.get_running_loop()
    samples: list[float] = []
    payload = bytes(64)
    for _ in range(count):
        t0 = loop.time()
        await a.request("b", "/bench/echo/1", payload)
        samples.append((loop.time() - t0) * 1000.0)
    params = {"transport": "mem", "latency_ms": latency_ms, "requests": count, "payload_bytes": len(payload)}
    emit("net.request_rtt_p50_ms", round(percentile(samples, 50), 3), "ms", **params)
    emit("net.request_rtt_p99_ms", round(percentile(samples, 99), 3), "ms", **params)
    await a.stop()
    await b.stop()


async def blob(bandwidth_bps: float, latency_ms: float) -> None:
    net = MemNetwork(1, default_link=LinkSpec(latency_ms=latency_ms, bandwidth_bps=bandwidth_bps))
    a, b = net.add_node("a"), net.add_node("b")
    await a.start()
    await b.start()
    store = MemoryBlobStore()
    digest = store.put(os.urandom(1 << 20))
    b.serve_blobs(store)
    net.wire("a", "b")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await a.fetch_blob("b", digest)
    ms = (loop.time() - t0) * 1000.0
    emit("net.blob_1mib_ms", round(ms, 3), "ms", transport="mem", bandwidth_bps=bandwidth_bps, latency_ms=latency_ms)
    await a.stop()
    await b.stop()


async def main(quick: bool) -> None:
    wall0 = time.perf_counter()
    await gossip(100, 20 if quick else 200, seed=1)
    await gossip(1000, 5 if quick else 50, seed=2)
    await request_rtt(0.0, 200 if quick else 2000)
    await request_rtt(LATENCY_MS, 10 if quick else 100)
    await blob(100e6, LATENCY_MS)
    emit("net.bench_mem_wall_s", round(time.perf_counter() - wall0, 3), "s", quick=quick)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    asyncio.run(main(parser.parse_args().quick))
