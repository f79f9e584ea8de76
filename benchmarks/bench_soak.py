"""Soak: one node serves a long stream of tasks from throwaway keys, with bad frames mixed in.

One open-mode node over memnet with a real sandbox, a real SQLite ledger and the
SQLite replay table, all in a temporary node home.  Senders sign each task with one
of ``keys`` throwaway submitter keys (a key is used ``tasks / keys`` times, as a CLI
user would); among them, a flood of bad frames (unsigned frames of nested empty
lists, forged signatures, oversized nonces, specs with too many values, garbage on
the status protocol); meanwhile an honest submitter sends one task at a time and its
round trips are timed.  After warm-up (the first fifth of the tasks) the node's RSS
and its disk use beyond the ledger itself must stay flat.

Figures:
- ``security.soak_tasks``: tasks served (verified receipts).
- ``security.soak_rss_growth_mb``: RSS at the end minus RSS after warm-up (goal <= 20).
- ``security.soak_disk_growth_mb``: growth of the node home minus the ledger files,
  after warm-up (goal <= 20); the ledger's own growth is a param.
- ``security.soak_honest_p99_ms``: the honest submitter's task round trip, p99, during the soak.
- ``security.unsigned_frame_peak_rss_mb``: peak RSS growth while the node receives one
  maximal unsigned frame (``[tables] spec_max_bytes`` of nested empty lists) over the
  task request path (goal <= 20), measured first, in a fresh process state.

Run: ``python benchmarks/bench_soak.py [--quick]`` (full: 100,000 tasks from 20,000 keys).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import wasmtime
from _common import emit, median, percentile

from edgenode import wire
from edgenode.config import NodeConfig, NodeSection
from edgenode.identity import Identity
from edgenode.net import MemoryBlobStore, NetError
from edgenode.net.memnet import MemNetwork, MemTransport
from edgenode.node import Node, NodeTiming
from edgenode.protocol import STATUS_PROTOCOL, TASK_PROTOCOL, Busy, Receipt, TaskLimits, TaskSpec
from edgenode.runtime import build_runtime
from edgenode.sandbox import Sandbox, SandboxConfig
from edgenode.tasks import REPLAY_DB, SqliteReplayStore, SystemClock
from ledger import SqliteLedgerStore

ROOT = Path(__file__).resolve().parent.parent
CAT_WAT = ROOT / "tests" / "node" / "cat.wat"
LEDGER = "ledger.db"
now_ms = SystemClock().now_ms
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    """Resident set size now (not the peak), in MB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * _PAGE / 1e6


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000.0  # Linux reports KiB


def disk_mb(home: Path) -> tuple[float, float]:
    """(bytes of the ledger files, bytes of everything else in the home), in MB."""
    ledger = other = 0
    for p in home.rglob("*"):
        if p.is_file():
            size = p.stat().st_size
            if p.name.startswith(LEDGER):
                ledger += size
            else:
                other += size
    return ledger / 1e6, other / 1e6


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def unsigned_frame(size: int, author: bytes) -> bytes:
    """An envelope of about ``size`` bytes whose body is nested empty lists, with a zero signature."""
    n = max(1, (size - 200) // 2)
    body = b"\x07" + _varint(n) + b"\x07\x00" * n
    return wire.encode([1, author, body, bytes(64)])


class Soak:
    def __init__(self, node: Node, clients: list[MemTransport], module: str) -> None:
        self.node = node
        self.clients = clients
        self.module = module
        self.served = 0
        self.busy = 0
        self.bad_sent = 0
        self._pool: dict[int, list[bytes]] = {}
        self.failed: dict[str, int] = {}
        """Tasks whose receipt says they did not run to completion, by status."""

    def spec(self, task_id: str, data: bytes, nonce: bytes | None = None, args: tuple[str, ...] = ()) -> TaskSpec:
        now = now_ms()
        return TaskSpec(task_id, "wasm", self.module, data, args, TaskLimits(), (), (),
                        nonce if nonce is not None else os.urandom(16), now, now + 10_000)

    async def run_one(self, client: MemTransport, key: Identity, task_id: str) -> bool:
        data = task_id.encode()
        for _ in range(100):
            answer = await client.request(self.node.peer_id, TASK_PROTOCOL, wire.seal(key, self.spec(task_id, data)),
                                          timeout=30.0)
            msg = wire.open_envelope(answer).message
            if isinstance(msg, Receipt):
                if msg.status != "ok":
                    self.failed[msg.status] = self.failed.get(msg.status, 0) + 1
                    return False
                if msg.output != data:
                    raise RuntimeError(f"wrong output for {task_id}: {msg.output[:64]!r}")
                return True
            if isinstance(msg, Busy):
                self.busy += 1
                await asyncio.sleep(msg.retry_after_ms / 1000.0)
                continue
            raise RuntimeError(f"{task_id} refused: {msg}")
        return False

    def _make_bad(self, kind: int, i: int, key: Identity) -> bytes:
        if kind == 0:
            return unsigned_frame(64 * 1024, key.public_key)
        if kind == 1:
            good = wire.seal(key, self.spec(f"forged-{i}", b"x"))
            return good[:-1] + bytes([good[-1] ^ 1])
        if kind == 2:
            return wire.seal(key, self.spec(f"nonce-{i}", b"x", nonce=os.urandom(256 * 1024)))
        return wire.seal(key, self.spec(f"many-{i}", b"x", args=("",) * (wire.MAX_ITEMS + 1)))

    async def bad_frame(self, client: MemTransport, i: int, key: Identity) -> None:
        """One bad frame; each kind comes from a pool of 20 (building them is the sender's cost, not the node's)."""
        kind = i % 5
        if kind < 4:
            pool = self._pool.setdefault(kind, [])
            if len(pool) < 20:
                pool.append(self._make_bad(kind, i, key))
            frame = pool[i % len(pool)]
        else:
            with contextlib.suppress(NetError):
                await client.request(self.node.peer_id, STATUS_PROTOCOL, os.urandom(512), timeout=30.0)
            self.bad_sent += 1
            return
        answer = await client.request(self.node.peer_id, TASK_PROTOCOL, frame, timeout=30.0)
        if isinstance(wire.open_envelope(answer).message, Receipt):
            raise RuntimeError(f"bad frame {kind} was served")
        self.bad_sent += 1


async def _measure_unsigned_frame(soak: Soak) -> tuple[float, int]:
    """Peak RSS growth (MB) while the node opens one maximal unsigned frame."""
    size = soak.node.config.tables.spec_max_bytes
    frame = unsigned_frame(size, Identity.generate().public_key)
    gc.collect()
    base = max(peak_rss_mb(), rss_mb())
    answer = await soak.clients[0].request(soak.node.peer_id, TASK_PROTOCOL, frame, timeout=60.0)
    if isinstance(wire.open_envelope(answer).message, Receipt):
        raise RuntimeError("an unsigned frame was served")
    return max(0.0, peak_rss_mb() - base), len(frame)


async def _bench(quick: bool) -> None:
    tasks = 2_000 if quick else 100_000
    keys_n = 400 if quick else 20_000
    bad_every = 10  # one bad frame per this many tasks
    workers = 12
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        sandbox = Sandbox(SandboxConfig(cache_dir=home / "cache"))
        net = MemNetwork(seed=1)
        ident = Identity.generate()
        store = await SqliteLedgerStore.open(home / LEDGER, synchronous="NORMAL")
        replay = await SqliteReplayStore.open(home / REPLAY_DB)
        rt = build_runtime(ident, NodeConfig(node=NodeSection(slots=2, queue=64)), net.add_node(ident), store,
                           sandbox=sandbox, timing=NodeTiming(advert_s=2.0, head_s=1.0), replay_store=replay, fl=False)
        node = rt.node
        await rt.start()
        blobs = MemoryBlobStore()
        module = blobs.put(bytes(wasmtime.wat2wasm(CAT_WAT.read_text())))
        clients = []
        for _ in range(workers + 1):
            cid = Identity.generate()
            t = net.add_node(cid)
            await t.start()
            t.serve_blobs(blobs)
            await t.connect(node.transport.listen_addrs[0])
            clients.append(t)
        soak = Soak(node, clients, module)
        try:
            await soak.run_one(clients[0], Identity.generate(), "warm-0")  # fetch + compile the module once
            frame_mb, frame_bytes = await _measure_unsigned_frame(soak)
            emit("security.unsigned_frame_peak_rss_mb", round(frame_mb, 2), "MB", frame_bytes=frame_bytes,
                 transport="memnet", path="task request", body="nested empty lists")

            keys = [Identity.generate() for _ in range(keys_n)]
            warm_at = tasks // 5
            marks: dict[str, float] = {}
            counter = iter(range(tasks))
            honest_lat: list[float] = []
            stop = asyncio.Event()

            async def worker(w: int) -> None:
                client = clients[w]
                for i in counter:
                    key = keys[i % keys_n]
                    if await soak.run_one(client, key, f"t{i}"):
                        soak.served += 1
                    if i % bad_every == 0:
                        await soak.bad_frame(client, i // bad_every, key)
                    if i == warm_at:
                        gc.collect()
                        marks["rss"] = rss_mb()
                        marks["ledger"], marks["other"] = disk_mb(home)
                        marks["t"] = time.perf_counter()

            async def honest() -> None:
                me = Identity.generate()
                client = clients[workers]
                j = 0
                while not stop.is_set():
                    t0 = time.perf_counter()
                    await soak.run_one(client, me, f"honest-{j}")
                    if "rss" in marks:
                        honest_lat.append((time.perf_counter() - t0) * 1000.0)
                    j += 1
                    await asyncio.sleep(0.02)

            t_start = time.perf_counter()
            h = asyncio.create_task(honest())
            await asyncio.gather(*(worker(w) for w in range(workers)))
            stop.set()
            await h
            elapsed = time.perf_counter() - t_start
            await node.chain.flush()
            gc.collect()
            rss_end = rss_mb()
            ledger_end, other_end = disk_mb(home)
            params = dict(keys=keys_n, bad_frames=soak.bad_sent, busy_retries=soak.busy, failed=soak.failed,
                          workers=workers,
                          transport="memnet", ledger="sqlite", seconds=round(elapsed, 1))
            emit("security.soak_tasks", soak.served, "tasks", **params)
            emit("security.soak_rss_growth_mb", round(rss_end - marks["rss"], 2), "MB",
                 rss_after_warmup_mb=round(marks["rss"], 1), rss_end_mb=round(rss_end, 1),
                 warmup_tasks=warm_at, replay_entries=len(node.executor.replay),
                 receipts_cached=node.executor.cached_receipts[0], rate_buckets=node.admission.tracked_peers,
                 **params)
            emit("security.soak_disk_growth_mb", round(other_end - marks["other"], 3), "MB",
                 other_after_warmup_mb=round(marks["other"], 3), other_end_mb=round(other_end, 3),
                 ledger_growth_mb=round(ledger_end - marks["ledger"], 2), ledger_end_mb=round(ledger_end, 2),
                 **params)
            emit("security.soak_honest_p99_ms", round(percentile(honest_lat, 99), 3), "ms",
                 p50_ms=round(median(honest_lat), 3), samples=len(honest_lat), **params)
        finally:
            for t in clients:
                await t.stop()
            await rt.stop()
            sandbox.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2,000 tasks from 400 keys (well under a minute)")
    args = ap.parse_args()
    asyncio.run(_bench(args.quick))
    # wasmtime's tokio worker threads can abort the process in their exit-time destructors
    # (after every figure is out); leave without running them so `make bench` sees success.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
