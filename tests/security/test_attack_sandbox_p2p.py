"""Issue 13, findings 1-3 over real py-libp2p: hostile task specs and modules from a stranger peer.

The memnet versions are in ``test_attack_sandbox.py``. Here every test runs one real node (a real
``P2PTransport`` on 127.0.0.1, a real sandbox with its cache on disk, a SQLite ledger) and an
attacker on its own ``P2PTransport`` that signs hand-made specs and sends them on the task
protocol, serving the modules they name from its own blob store. Each test checks the node's
answer, then that an honest peer (another key, another transport) still gets its task run.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import wasmtime

from edgenode import wire
from edgenode.config import NodeConfig, NodeSection
from edgenode.identity import Identity
from edgenode.net import MemoryBlobStore
from edgenode.net.p2p import P2PTransport
from edgenode.node import Node, NodeTiming
from edgenode.protocol import TASK_PROTOCOL, Receipt, Rejected, TaskLimits, TaskSpec
from edgenode.reasons import Reason
from edgenode.runtime import Runtime, build_runtime
from edgenode.sandbox import Sandbox, SandboxConfig
from edgenode.tasks import Submitter, SystemClock, TaskRequest
from ledger import SqliteLedgerStore
from tests.sandbox.hostile import bomb_module, flood_wasm, grow_wasm, sleep_wasm

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
WAIT = 30.0
"""Upper bound of any single wait here (seconds)."""
CAT = bytes(wasmtime.wat2wasm((Path(__file__).resolve().parent.parent / "node" / "cat.wat").read_text()))
PWNED = bytes(
    wasmtime.wat2wasm("""(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "pwned")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 5))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))""")
)
MAX_MEMORY_MB = 64
MAX_OUTPUT = 64 << 10
"""The node's own ceilings (small, so a clamp to them is unmistakable)."""


class WatchedBlobs(MemoryBlobStore):
    """The attacker's blob store, noting every name the node asks it for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def get(self, digest: str) -> bytes | None:
        self.asked.append(digest)
        return super().get(digest)


@dataclass
class Target:
    node: Node
    sandbox: Sandbox
    attacker: P2PTransport
    signer: Identity
    home: Path
    blobs: WatchedBlobs = field(default_factory=WatchedBlobs)

    async def send(self, module: str, data: bytes = b"", limits: TaskLimits | None = None) -> object:
        """A raw signed spec from the attacker, as a hostile peer would craft it; the opened answer."""
        now = SystemClock().now_ms()
        spec = TaskSpec(
            task_id=os.urandom(8).hex(), kind="wasm", module=module, input=data, args=(),
            limits=limits or TaskLimits(), requires=(), models=(), nonce=os.urandom(16),
            issued_ms=now, expires_ms=now + 20_000,
        )
        async with asyncio.timeout(WAIT):
            resp = await self.attacker.request(
                self.node.peer_id, TASK_PROTOCOL, wire.seal(self.signer, spec), timeout=WAIT
            )
        env = wire.open_envelope(resp)
        assert env.author_id == self.node.peer_id
        return env.message

    async def honest(self) -> None:
        """An honest peer (its own key and transport) still gets a task run, verified, over libp2p."""
        ident = Identity.generate()
        t = P2PTransport(ident, listen=LOOPBACK)
        sub = Submitter(ident, t, clock=SystemClock(), offer_window_ms=200)
        try:
            await t.start()
            async with asyncio.timeout(WAIT):
                await sub.join([self.node.transport.listen_addrs[0]])
                out = await sub.submit(
                    TaskRequest("wasm", sub.add_module(CAT), input=b"still here", deadline_ms=20_000)
                )
            assert out.ok and out.output == b"still here" and out.executor == self.node.peer_id
        finally:
            await sub.close()
            await t.stop()


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[Target]:
    # cache three levels below tmp_path: "../../../<name>" from the cache directory (where the code
    # before the fix put <name>.cwasm) lands in tmp_path itself
    state = tmp_path / "node" / "state"
    state.mkdir(parents=True)
    sandbox = Sandbox(
        SandboxConfig(cache_dir=state / "cache", max_memory_mb=MAX_MEMORY_MB, max_output_bytes=MAX_OUTPUT)
    )
    ident, signer = Identity.generate(), Identity.generate()
    attacker = P2PTransport(signer, listen=LOOPBACK)
    rt: Runtime | None = None
    try:
        store = await SqliteLedgerStore.open(state / "ledger.db", synchronous="NORMAL")
        rt = build_runtime(
            ident,
            NodeConfig(node=NodeSection(slots=2, queue=8)),
            P2PTransport(ident, listen=LOOPBACK),
            store,
            sandbox=sandbox,
            timing=NodeTiming(advert_s=0.5, head_s=0.5),
            fl=False,
        )
        async with asyncio.timeout(WAIT):
            await rt.start()
            await attacker.start()
            target = Target(rt.node, sandbox, attacker, signer, tmp_path)
            attacker.serve_blobs(target.blobs)
            await attacker.connect(rt.transport.listen_addrs[0], timeout=WAIT)
        yield target
    finally:
        await attacker.stop()
        if rt is not None:
            await rt.stop()
        sandbox.close()


# -- 1: a module name that walks out of the cache -------------------------------------------------


async def test_traversal_module_name_is_rejected_over_libp2p(target: Target) -> None:
    traversal = "../../../" + "a" * 55
    assert len(traversal) == 64
    # valid native code planted where the old code looked for "<cache_dir>/<module>.cwasm"
    planted = target.home / f"{'a' * 55}.cwasm"
    planted.write_bytes(bytes(wasmtime.Module(target.sandbox.engine, PWNED).serialize()))

    def files() -> list[Path]:  # every path under the test's directory but the ledger's own (it may grow)
        return sorted(p for p in target.home.rglob("*") if not p.name.startswith("ledger.db"))

    before = (planted.read_bytes(), planted.stat().st_mtime_ns, files())
    served = target.blobs.put(CAT)
    for name in (traversal, served.upper(), served[:63]):
        out = await target.send(name, b"x")
        assert isinstance(out, Rejected), (name, out)
        assert out.reason == Reason.BAD_MODULE and "sha256" in out.detail
    assert (planted.read_bytes(), planted.stat().st_mtime_ns, files()) == before
    assert target.blobs.asked == []  # refused before any fetch
    # the same attacker, naming the module properly, is served normally
    out = await target.send(served, b"fine")
    assert isinstance(out, Receipt) and out.status == "ok" and out.output == b"fine"
    await target.honest()


# -- 2: limits from the spec, and sleeping through the deadline -------------------------------------


async def test_spec_limits_are_clamped_to_the_node_ceilings_over_libp2p(target: Target) -> None:
    # memory: a grow within the node's ceiling works, one past it is refused even though the spec asks 4 GiB
    small = target.blobs.put(grow_wasm((MAX_MEMORY_MB // 4) * 16))
    out = await target.send(small, limits=TaskLimits(memory_mb=4096))
    assert isinstance(out, Receipt) and out.status == "ok" and out.exit_code == 0
    big = target.blobs.put(grow_wasm(2 * MAX_MEMORY_MB * 16))
    out = await target.send(big, limits=TaskLimits(memory_mb=4096))
    assert isinstance(out, Receipt) and out.status == "exit" and out.exit_code == 1  # growth refused
    # output: the spec asks 2 GiB, the receipt carries the node's ceiling and no more
    flood = target.blobs.put(flood_wasm(4 * MAX_OUTPUT))
    out = await target.send(flood, limits=TaskLimits(max_output_bytes=2**31))
    assert isinstance(out, Receipt) and out.status == "output_limit"
    assert len(out.output) == MAX_OUTPUT
    await target.honest()


async def test_wasi_sleep_ends_at_the_deadline_over_libp2p(target: Target) -> None:
    module = target.blobs.put(sleep_wasm(3_000_000_000))  # poll_oneoff: 3 s on the monotonic clock
    out = await target.send(module, limits=TaskLimits(timeout_ms=100))
    assert isinstance(out, Receipt) and out.status == "deadline"
    assert out.wall_ms < 3000  # the node's own account of the run: the sleep did not outlast the deadline
    await target.honest()


# -- 3: compile bombs --------------------------------------------------------------------------------


async def test_compile_bomb_fetched_over_libp2p_is_refused(target: Target) -> None:
    # 1 MiB, one function: minutes of Cranelift without a limit
    bomb = target.blobs.put(bomb_module(1 << 20))
    out = await target.send(bomb)
    assert isinstance(out, Receipt) and out.status in ("invalid_module", "compile_timeout")
    assert out.output == b""
    assert target.blobs.asked == [bomb]  # fetched from the attacker, so the refusal is the sandbox's
    assert b"InvalidModule" in out.stderr or b"CompileTimeout" in out.stderr
    assert not target.sandbox.has_module(bomb)
    assert not list((target.home / "node").rglob(f"{bomb}.cwasm"))
    await target.honest()
