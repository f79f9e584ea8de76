"""Attack figures (issue 13): how fast a node shrugs off hostile task modules, through its task protocol.

One node (real sandbox with its disk cache, real SQLite ledger) on the in-memory network and
a stranger peer that sends signed task specs, as an attacker in open mode would. Times run
from sending the spec to holding the signed answer. The hostile modules are made here.

    python benchmarks/bench_attacks.py [--quick]

Figures: security.compile_bomb_s (the 1 MiB single-function module, refused; goal <= 2 s),
security.sleep_escape_ms (a task that sleeps 3 s under timeout_ms=100; goal <= 200 ms),
security.compile_kill_s (a module under the size limits that compiles too slowly, killed at a
1 s compile limit).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import wasmtime
from _common import emit as _emit
from _common import median

from edgenode import wire
from edgenode.config import NodeConfig, NodeSection
from edgenode.identity import Identity
from edgenode.net.memnet import MemNetwork
from edgenode.node import Node, NodeTiming
from edgenode.protocol import TASK_PROTOCOL, Receipt, TaskLimits, TaskSpec
from edgenode.runtime import build_runtime
from edgenode.sandbox import CompileTimeout, Sandbox, SandboxConfig
from edgenode.tasks import Submitter, SystemClock
from ledger import SqliteLedgerStore


def emit(name: str, value: float, unit: str, **params: object) -> None:
    """emit() with the 1-minute load average: the machine is shared, times depend on it."""
    _emit(name, value, unit, **params, loadavg_1m=round(os.getloadavg()[0], 2))


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _section(section_id: int, payload: bytes) -> bytes:
    return bytes([section_id]) + _leb(len(payload)) + payload


def bomb_module(size: int) -> bytes:
    """About ``size`` bytes, one function: k live constants, k empty loops, k - 1 adds (Cranelift time explodes)."""
    k = max(2, (size - 64) // 6)
    body = b"\x00" + b"\x41\x01" * k + b"\x03\x40\x0b" * k + b"\x6a" * (k - 1) + b"\x1a\x0b"
    return (b"\0asm\x01\0\0\0" + _section(1, b"\x01\x60\x00\x00") + _section(3, b"\x01\x00")
            + _section(7, b"\x01\x06_start\x00\x00") + _section(10, b"\x01" + _leb(len(body)) + body))


def sleep_module(ns: int) -> bytes:
    """A WASI task that sleeps ``ns`` nanoseconds with one poll_oneoff clock subscription."""
    return bytes(wasmtime.wat2wasm(f"""(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 16) (i32.const 1)) (i64.store (i32.const 24) (i64.const {ns}))
    (drop (call $poll (i32.const 0) (i32.const 1024) (i32.const 1) (i32.const 2048)))))"""))


async def _send(sub: Submitter, node: Node, module: str, limits: TaskLimits) -> tuple[float, str]:
    now = sub.clock.now_ms()
    spec = TaskSpec(os.urandom(8).hex(), "wasm", module, b"", (), limits, (), (), os.urandom(16), now, now + 60_000)
    t0 = time.perf_counter()
    resp = await sub.transport.request(node.peer_id, TASK_PROTOCOL, wire.seal(sub.signer, spec), timeout=120)
    took = time.perf_counter() - t0
    msg = wire.open_envelope(resp).message
    return took, msg.status if isinstance(msg, Receipt) else type(msg).__name__


async def node_figures(home: Path, reps: int) -> None:
    cfg = SandboxConfig(cache_dir=home / "cache")
    net = MemNetwork(seed=13)
    ident = Identity.generate()
    sandbox = Sandbox(cfg)
    store = await SqliteLedgerStore.open(home / "ledger.db")
    rt = build_runtime(ident, NodeConfig(node=NodeSection(slots=2, queue=8)), net.add_node(ident), store,
                       sandbox=sandbox, timing=NodeTiming(advert_s=0.5, head_s=0.5), fl=False)
    node = rt.node
    await rt.start()
    stranger = Identity.generate()
    t = net.add_node(stranger)
    await t.start()
    sub = Submitter(stranger, t, clock=SystemClock(), offer_window_ms=200)
    try:
        await sub.join([node.transport.listen_addrs[0]])
        bomb = bomb_module(1 << 20)
        h = sub.add_module(bomb)
        times, statuses = [], set()
        for _ in range(reps):
            took, status = await _send(sub, node, h, TaskLimits())
            times.append(took)
            statuses.add(status)
        emit("security.compile_bomb_s", round(median(times), 3), "s", module_bytes=len(bomb), functions=1,
             max_function_bytes=cfg.max_function_bytes, status=",".join(sorted(statuses)), reps=reps,
             max_s=round(max(times), 3), goal_s=2.0)
        h = sub.add_module(sleep_module(3_000_000_000))
        times, statuses = [], set()
        for _ in range(reps):
            took, status = await _send(sub, node, h, TaskLimits(timeout_ms=100))
            times.append(took * 1000.0)
            statuses.add(status)
        emit("security.sleep_escape_ms", round(median(times), 1), "ms", sleep_ms=3000, timeout_ms=100,
             status=",".join(sorted(statuses)), reps=reps, max_ms=round(max(times), 1), goal_ms=200)
    finally:
        await sub.close()
        await t.stop()
        await rt.stop()
        sandbox.close()


def compile_kill(reps: int) -> None:
    module = bomb_module(128 << 10)  # under the 256 KiB function limit, minutes to compile on a Pi
    cfg = SandboxConfig(compile_timeout_ms=1000)
    times = []
    with Sandbox(cfg) as sb:
        for _ in range(reps):
            t0 = time.perf_counter()
            try:
                sb.compile(module)
                status = "compiled"
            except CompileTimeout:
                status = "compile_timeout"
            times.append(time.perf_counter() - t0)
    emit("security.compile_kill_s", round(median(times), 3), "s", module_bytes=len(module),
         compile_timeout_ms=cfg.compile_timeout_ms, status=status, reps=reps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="one repetition of each figure")
    args = ap.parse_args()
    logging.getLogger("edgenode").setLevel(logging.ERROR)  # the refusals are expected: keep stderr quiet
    reps = 1 if args.quick else 5
    with tempfile.TemporaryDirectory(prefix="bench-attacks-") as tmp:
        asyncio.run(node_figures(Path(tmp), reps))
    compile_kill(1 if args.quick else 3)


if __name__ == "__main__":
    main()
