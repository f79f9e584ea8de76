"""Task figures: submit -> verified receipt latency (p50/p99) and swarm throughput.

    python benchmarks/bench_task.py [--quick] [--transport p2p|memnet|both] [--nodes N]

``p2p``: N ``edgenode run`` processes on 127.0.0.1 (real libp2p, SQLite ledgers,
wasmtime) and an in-process light submitter.  ``memnet``: N in-process nodes on the
in-memory network (same Node code, memory ledgers, one shared sandbox).
Latency is measured one task at a time; throughput with many tasks in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import wasmtime
from _common import emit, load_avg, percentile, proc_cpu_s, start_node, stop_nodes

from edgenode.config import NodeConfig, NodeSection
from edgenode.identity import Identity
from edgenode.net.memnet import MemNetwork
from edgenode.net.p2p import P2PTransport
from edgenode.runtime import build_runtime
from edgenode.sandbox import Sandbox
from edgenode.tasks import Submitter, TaskRequest
from ledger import MemoryLedgerStore

ROOT = Path(__file__).resolve().parents[1]
CAT_WAT = ROOT / "tests" / "node" / "cat.wat"


class Cpu:
    """CPU seconds used by this process and by the node processes, between two marks."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.nodes_s = self.self_s = 0.0

    def _now(self) -> tuple[float, float]:
        return sum(proc_cpu_s(p) for p in self.pids), proc_cpu_s()

    def start(self) -> None:
        self._t0 = self._now()

    def stop(self) -> None:
        n, s = self._now()
        self.nodes_s, self.self_s = n - self._t0[0], s - self._t0[1]


async def measure(
    sub: Submitter, module: str, n_lat: int, n_tp: int, inflight: int, cpu: Cpu
) -> tuple[list[float], float]:
    req = TaskRequest("wasm", module, input=b"ping", deadline_ms=30_000)
    for _ in range(5):  # warm-up: module fetch and compile on the executors
        await sub.submit(req)
    lat = []
    for _ in range(n_lat):
        t0 = time.perf_counter()
        out = await sub.submit(req)
        lat.append((time.perf_counter() - t0) * 1000)
        assert out.ok and out.output == b"ping"
    gate = asyncio.Semaphore(inflight)

    async def one() -> None:
        async with gate:
            out = await sub.submit(req)
            assert out.ok

    cpu.start()
    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n_tp)))
    elapsed = time.perf_counter() - t0
    cpu.stop()
    return lat, n_tp / elapsed


async def run_memnet(nodes: int, n_lat: int, n_tp: int, inflight: int) -> None:
    wasm = bytes(wasmtime.wat2wasm(CAT_WAT.read_text()))
    net = MemNetwork(seed=1)
    sandbox = Sandbox()
    swarm = []
    for _ in range(nodes):
        ident = Identity.generate()
        rt = build_runtime(ident, NodeConfig(node=NodeSection(slots=4, queue=256)), net.add_node(ident),
                           MemoryLedgerStore(), sandbox=sandbox, fl=False)
        await rt.start()
        swarm.append(rt)
    net.full_mesh([n.peer_id for n in swarm])
    ident = Identity.generate()
    t = net.add_node(ident)
    await t.start()
    sub = Submitter(ident, t)
    await sub.join([n.transport.listen_addrs[0] for n in swarm])
    cpu = Cpu([])
    load = load_avg()
    lat, tp = await measure(sub, sub.add_module(wasm), n_lat, n_tp, inflight, cpu)
    await sub.close()
    await t.stop()
    for rt in swarm:
        await rt.stop()
    sandbox.close()
    report(lat, tp, n_tp, cpu, nodes=nodes, transport="memnet", processes=1, inflight=inflight, load=load)


async def run_p2p(nodes: int, n_lat: int, n_tp: int, inflight: int) -> None:
    wasm = bytes(wasmtime.wat2wasm(CAT_WAT.read_text()))
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        try:
            first, boot = start_node(Path(tmp) / "n0", [])
            procs.append(first)
            addrs = [boot]
            for i in range(1, nodes):
                p, a = start_node(Path(tmp) / f"n{i}", [boot])
                procs.append(p)
                addrs.append(a)
            ident = Identity.generate()
            t = P2PTransport(ident)
            await t.start()
            sub = Submitter(ident, t)
            await sub.join(addrs)
            cpu = Cpu([p.pid for p in procs])
            load = load_avg()
            lat, tp = await measure(sub, sub.add_module(wasm), n_lat, n_tp, inflight, cpu)
            await sub.close()
            await t.stop()
        finally:
            stop_nodes(procs)
    report(lat, tp, n_tp, cpu, nodes=nodes, transport="p2p", processes=nodes + 1, inflight=inflight, load=load)


def report(lat: list[float], tp: float, n_tp: int, cpu: Cpu, **params: object) -> None:
    emit("task.e2e_p50_ms", round(percentile(lat, 50), 3), "ms", tasks=len(lat), **params)
    emit("task.e2e_p99_ms", round(percentile(lat, 99), 3), "ms", tasks=len(lat), **params)
    emit("task.throughput_per_s", round(tp, 1), "tasks/s", tasks=n_tp, **params)
    emit("task.cpu_ms_per_task", round((cpu.nodes_s + cpu.self_s) * 1000 / n_tp, 2), "ms",
         executors_ms=round(cpu.nodes_s * 1000 / n_tp, 2), submitter_ms=round(cpu.self_s * 1000 / n_tp, 2),
         tasks=n_tp, **params)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a fast smoke run (3 nodes, few tasks)")
    ap.add_argument("--transport", choices=("p2p", "memnet", "both"), default="both")
    ap.add_argument("--nodes", type=int, default=None)
    args = ap.parse_args()
    nodes = args.nodes or (3 if args.quick else 10)
    n_lat, n_tp = (30, 100) if args.quick else (300, 2000)
    if args.transport in ("memnet", "both"):
        asyncio.run(run_memnet(nodes, n_lat, n_tp, inflight=64))
    if args.transport in ("p2p", "both"):
        asyncio.run(run_p2p(nodes, n_lat, n_tp, inflight=64))


if __name__ == "__main__":
    main()
    # wasmtime's WASI tokio threads abort the process when torn down by interpreter finalisation;
    # everything is printed and closed by now, so leave without it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
