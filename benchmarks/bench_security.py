"""Zero-trust swarm: honest task latency with and without a flooding peer; fuzz inputs tried.

Figures:
- ``security.p99_ms_clean``: submit -> verified (decrypted, grant-checked) receipt, p99,
  on a certified swarm of nodes over memnet (real sandbox, real SQLite ledgers).
- ``security.p99_ms_under_flood``: the same while a certified peer floods the nodes with
  invalid-signature task requests and garbage gossip (it gets banned, keeps trying, and is
  refused at the gate).
- ``security.flood_msgs_per_s``: how many flood messages per second the nodes absorbed.
- ``security.fuzz_inputs``: inputs tried by the fuzz harness over every decoder and
  handler that takes peer bytes (``tests/security/test_fuzz_*.py``), one line per target
  plus the total.

Run: ``python benchmarks/bench_security.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import wasmtime
from _common import emit, median, percentile, start_node, stop_nodes

from edgenode import wire
from edgenode.config import NodeConfig, NodeSection
from edgenode.identity import Identity
from edgenode.net import NetError
from edgenode.net.memnet import MemNetwork
from edgenode.node import NodeTiming
from edgenode.protocol import ADVERT_TOPIC, TASK_PROTOCOL, TaskLimits, TaskSpec
from edgenode.runtime import Runtime, build_runtime
from edgenode.sandbox import Sandbox
from edgenode.security import SwarmGuard, issue_certificate
from edgenode.tasks import Submitter, SystemClock, TaskRequest
from ledger import SqliteLedgerStore

ROOT = Path(__file__).resolve().parent.parent
CAT_WAT = ROOT / "tests" / "node" / "cat.wat"


CLOCK = SystemClock()
now_ms = CLOCK.now_ms


async def _swarm(tmp: Path, sandbox: Sandbox, n: int) -> tuple[MemNetwork, Identity, list[Runtime]]:
    net = MemNetwork(seed=1)
    admin = Identity.generate()
    nodes = []
    for i in range(n):
        ident = Identity.generate()
        cert = issue_certificate(admin, ident.public_key, ("executor",), serial=i + 1, now_ms=now_ms() - 1000)
        store = await SqliteLedgerStore.open(tmp / f"n{i}.db", synchronous="NORMAL")
        rt = build_runtime(ident, NodeConfig(node=NodeSection(slots=2, queue=64)), net.add_node(ident), store,
                           sandbox=sandbox, timing=NodeTiming(advert_s=0.5, head_s=0.5),
                           guard=SwarmGuard(ident, cert, CLOCK), fl=False)
        nodes.append(rt)
    for rt in nodes:
        await rt.start()
    net.full_mesh([x.peer_id for x in nodes])
    return net, admin, nodes


async def _member(net: MemNetwork, admin: Identity, nodes: list[Runtime], serial: int) -> Submitter:
    ident = Identity.generate()
    cert = issue_certificate(admin, ident.public_key, ("submitter",), serial=serial, now_ms=now_ms() - 1000)
    t = net.add_node(ident)
    await t.start()
    sub = Submitter(ident, t, clock=SystemClock(), guard=SwarmGuard(ident, cert, CLOCK))
    await sub.join([x.transport.listen_addrs[0] for x in nodes])
    return sub


async def _latencies(sub: Submitter, module: str, tasks: int, concurrency: int) -> list[float]:
    out: list[float] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            t0 = time.perf_counter()
            res = await sub.submit(TaskRequest("wasm", module, input=f"job {i}".encode(), deadline_ms=30_000))
            assert res.output == f"job {i}".encode()
            out.append((time.perf_counter() - t0) * 1000.0)

    await asyncio.gather(*(one(i) for i in range(tasks)))
    return out


async def _flood(flooder: Submitter, nodes: list[Runtime], module: str, stop: asyncio.Event) -> int:
    return await _flood_peers(flooder, [x.peer_id for x in nodes], module, stop)


async def _flood_peers(flooder: Submitter, peers: list[str], module: str, stop: asyncio.Event,
                       workers: int = 8) -> int:
    """``workers`` loops sending invalid-signature task requests to every peer and garbage gossip."""
    now = now_ms()
    spec = TaskSpec("flood", "wasm", module, b"x", (), TaskLimits(), (), (), os.urandom(16), now, now + 60_000)
    good = wire.seal(flooder.signer, spec)
    forged = good[:-1] + bytes([good[-1] ^ 1])
    sent = 0

    async def worker() -> None:
        nonlocal sent
        while not stop.is_set():
            for peer in peers:
                with contextlib.suppress(NetError):
                    await flooder.transport.request(peer, TASK_PROTOCOL, forged, timeout=5)
                sent += 1
            with contextlib.suppress(NetError):
                await flooder.transport.publish(ADVERT_TOPIC, os.urandom(64))
            sent += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    return sent


async def _bench(quick: bool) -> None:
    tasks = 60 if quick else 400
    n = 3
    sandbox = Sandbox()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            net, admin, nodes = await _swarm(Path(tmp), sandbox, n)
            honest = await _member(net, admin, nodes, 100)
            module = honest.add_module(bytes(wasmtime.wat2wasm(CAT_WAT.read_text())))
            await _latencies(honest, module, 10, 4)  # warm up: compile, fetch module, handshakes
            clean = await _latencies(honest, module, tasks, 4)
            emit("security.p99_ms_clean", round(percentile(clean, 99), 3), "ms", nodes=n, tasks=tasks,
                 transport="memnet", concurrency=4, p50_ms=round(median(clean), 3))
            flooder = await _member(net, admin, nodes, 101)
            stop = asyncio.Event()
            t0 = time.perf_counter()
            flood = asyncio.create_task(_flood(flooder, nodes, module, stop))
            dirty = await _latencies(honest, module, tasks, 4)
            stop.set()
            sent = await flood
            elapsed = time.perf_counter() - t0
            banned = sum(1 for x in nodes if x.guard is not None and x.guard.abuse.is_banned(
                flooder.transport.peer_id, x.guard.abuse_time_s()))
            emit("security.p99_ms_under_flood", round(percentile(dirty, 99), 3), "ms", nodes=n, tasks=tasks,
                 transport="memnet", concurrency=4, p50_ms=round(median(dirty), 3), flood_msgs=sent,
                 flooder_banned_by=banned)
            emit("security.flood_msgs_per_s", round(sent / elapsed, 1), "msgs/s", nodes=n, transport="memnet")
            for c in (honest, flooder):
                await c.close()
                await c.transport.stop()
            for rt in nodes:
                await rt.stop()
    finally:
        sandbox.close()


def _start_node(home: Path, admin: Identity, serial: int, bootstrap: list[str]) -> tuple[subprocess.Popen[str], str]:
    """``edgenode run`` in swarm mode on 127.0.0.1 (init, certificate, config); its first listen address."""

    def configure(home: Path) -> None:
        ident = Identity.load(home / "node.key")
        (home / "swarm.cert").write_bytes(
            issue_certificate(admin, ident.public_key, ("executor",), serial=serial, now_ms=now_ms() - 1000))
        (home / "config.toml").write_text(f'[swarm]\nswarm_id = "{admin.peer_id}"\n')

    return start_node(home, bootstrap, configure)


async def _p2p_member(admin: Identity, serial: int, addrs: list[str]) -> Submitter:
    from edgenode.net.p2p import P2PTransport

    ident = Identity.generate()
    cert = issue_certificate(admin, ident.public_key, ("submitter",), serial=serial, now_ms=now_ms() - 1000)
    t = P2PTransport(ident)
    await t.start()
    sub = Submitter(ident, t, clock=SystemClock(), guard=SwarmGuard(ident, cert, CLOCK))
    await sub.join(addrs)
    return sub


async def _bench_p2p(quick: bool) -> None:
    import logging

    logging.disable(logging.CRITICAL)  # the refused flooder's broken libp2p streams are expected here
    tasks = 40 if quick else 200
    n = 3
    admin = Identity.generate()
    procs: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            addrs: list[str] = []
            for i in range(n):
                proc, addr = _start_node(Path(tmp) / f"n{i}", admin, i + 1, addrs[:1])
                procs.append(proc)
                addrs.append(addr)
            honest = await _p2p_member(admin, 100, addrs)
            module = honest.add_module(bytes(wasmtime.wat2wasm(CAT_WAT.read_text())))
            await _latencies(honest, module, 10, 4)
            clean = await _latencies(honest, module, tasks, 4)
            emit("security.p99_ms_clean", round(percentile(clean, 99), 3), "ms", nodes=n, tasks=tasks,
                 transport="p2p", concurrency=4, p50_ms=round(median(clean), 3))
            flooder = await _p2p_member(admin, 101, addrs)
            peers = [a.rsplit("/", 1)[-1] for a in addrs]
            stop = asyncio.Event()
            t0 = time.perf_counter()
            flood = asyncio.create_task(_flood_peers(flooder, peers, module, stop))
            dirty = await _latencies(honest, module, tasks, 4)
            stop.set()
            sent = await flood
            emit("security.p99_ms_under_flood", round(percentile(dirty, 99), 3), "ms", nodes=n, tasks=tasks,
                 transport="p2p", concurrency=4, p50_ms=round(median(dirty), 3), flood_msgs=sent)
            emit("security.flood_msgs_per_s", round(sent / (time.perf_counter() - t0), 1), "msgs/s", nodes=n,
                 transport="p2p")
            for c in (honest, flooder):
                await c.close()
                await c.transport.stop()
        finally:
            stop_nodes(procs)


def _fuzz(quick: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "fuzz.jsonl"
        env = dict(os.environ, EDGENODE_FUZZ_REPORT=str(report), EDGENODE_FUZZ_SECONDS="1" if quick else "5")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "tests/security/test_fuzz_decoders.py", "tests/security/test_fuzz_handlers.py"]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-2000:])
            raise SystemExit("the fuzz harness failed")
        lines = [json.loads(x) for x in report.read_text().splitlines() if x.strip()]
    for rec in lines:
        sys.stdout.write(json.dumps(rec) + "\n")
    emit("security.fuzz_inputs", sum(int(r["value"]) for r in lines), "inputs", targets=len(lines),
         fuzz_seconds=1 if quick else 5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer tasks and a 1 s fuzz budget per target")
    ap.add_argument("--no-fuzz", action="store_true", help="skip the fuzz harness")
    ap.add_argument("--transport", choices=("memnet", "p2p", "both"), default="both",
                    help="memnet (in process) and/or p2p (node processes over libp2p on 127.0.0.1)")
    args = ap.parse_args()
    if args.transport in ("memnet", "both"):
        asyncio.run(_bench(args.quick))
    if args.transport in ("p2p", "both"):
        asyncio.run(_bench_p2p(args.quick))
    if not args.no_fuzz:
        _fuzz(args.quick)
    # wasmtime's WASI worker threads abort the process when torn down at interpreter exit
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
