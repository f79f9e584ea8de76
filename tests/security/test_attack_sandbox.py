"""Issue 13, findings 1-3 through the peer-facing path: hostile task specs and modules over memnet.

Each test sends what an attacker would (a stranger in open mode, a member in swarm mode),
checks that the node refuses it with a reason, and that it still serves an honest task after.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import wasmtime

from edgenode import wire
from edgenode.config import NodeConfig, NodeSection
from edgenode.net.memnet import MemNetwork
from edgenode.node import Node, NodeTiming
from edgenode.protocol import TASK_PROTOCOL, Receipt, Rejected, TaskLimits, TaskSpec
from edgenode.reasons import Reason
from edgenode.sandbox import Sandbox, SandboxConfig
from edgenode.security import CapabilityRequest, LocalPolicy, Refused, decide
from edgenode.tasks import Submitter
from ledger import SqliteLedgerStore
from tests.runtimes import memnet_runtime, memnet_submitter
from tests.sandbox.hostile import bomb_module, flood_wasm, grow_wasm, sleep_wasm

from .conftest import SwarmFactory

pytestmark = pytest.mark.timeout(60)

CAT_WAT = Path(__file__).resolve().parent.parent / "node" / "cat.wat"
PWNED = bytes(wasmtime.wat2wasm("""(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "pwned")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 5))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""))


@dataclass
class OpenNode:
    node: Node
    sandbox: Sandbox
    sub: Submitter
    home: Path

    async def send(self, module: str, data: bytes = b"", limits: TaskLimits | None = None) -> object:
        """A raw signed spec from the stranger, as a hostile peer would craft it; the opened answer."""
        now = self.sub.clock.now_ms()
        spec = TaskSpec(os.urandom(8).hex(), "wasm", module, data, (), limits or TaskLimits(), (), (),
                        os.urandom(16), now, now + 20_000)
        resp = await self.sub.transport.request(self.node.peer_id, TASK_PROTOCOL, wire.seal(self.sub.signer, spec),
                                                timeout=30)
        return wire.open_envelope(resp).message

    async def honest(self) -> None:
        """An honest task still runs after the attack."""
        out = await self.send(self.sub.add_module(bytes(wasmtime.wat2wasm(CAT_WAT.read_text()))), b"still here")
        assert isinstance(out, Receipt) and out.status == "ok" and out.output == b"still here"


async def open_node_with(tmp_path: Path, config: SandboxConfig) -> AsyncIterator[OpenNode]:
    net = MemNetwork(seed=13)
    sandbox = Sandbox(config)
    store = await SqliteLedgerStore.open(tmp_path / "ledger.db", synchronous="NORMAL")
    rt = memnet_runtime(net, NodeConfig(node=NodeSection(slots=2, queue=8)), store, sandbox=sandbox,
                        timing=NodeTiming(advert_s=0.2, head_s=0.2))
    await rt.start()
    sub = await memnet_submitter(net, rt)
    try:
        yield OpenNode(rt.node, sandbox, sub, tmp_path)
    finally:
        await sub.close()
        await sub.transport.stop()
        await rt.stop()
        sandbox.close()


@pytest.fixture
async def open_node(tmp_path: Path) -> AsyncIterator[OpenNode]:
    async for on in open_node_with(tmp_path, SandboxConfig(cache_dir=tmp_path / "cache")):
        yield on


# -- 1: a module name that walks out of the cache -------------------------------------------------


async def test_traversal_module_name_is_refused_and_touches_nothing(open_node: OpenNode) -> None:
    # A valid precompiled module planted outside the cache, named by a 64-character traversal.
    planted = open_node.home / "elsewhere"
    planted.mkdir()
    name = "../../elsewhere/"
    name += "a" * (64 - len(name))
    target = planted / f"{name.rsplit('/', 1)[1]}.cwasm"
    target.write_bytes(bytes(wasmtime.Module(open_node.sandbox.engine, PWNED).serialize()))
    before = (target.read_bytes(), target.stat().st_mtime_ns, sorted(open_node.home.rglob("*")))
    out = await open_node.send(name, b"")
    assert isinstance(out, Rejected) and out.reason == Reason.BAD_MODULE and "sha256" in out.detail
    assert (target.read_bytes(), target.stat().st_mtime_ns, sorted(open_node.home.rglob("*"))) == before
    await open_node.honest()


async def test_unsealed_module_in_the_cache_is_not_run(open_node: OpenNode) -> None:
    # The honest module's precompiled file is swapped for other native code (no seal): the node
    # deletes it and fetches and compiles the real module again.
    cat = bytes(wasmtime.wat2wasm(CAT_WAT.read_text()))
    h = open_node.sandbox.compile(cat)
    open_node.sandbox.forget(h)
    (path,) = (open_node.home / "cache").rglob(f"{h}.cwasm")
    path.write_bytes(bytes(wasmtime.Module(open_node.sandbox.engine, PWNED).serialize()))
    open_node.sub.add_module(cat)
    out = await open_node.send(h, b"mine")
    assert isinstance(out, Receipt) and out.output != b"pwned"
    await open_node.honest()


# -- 2: limits from the spec, and sleeping through the deadline -------------------------------------


async def test_stranger_cannot_raise_memory_past_the_node_ceiling(open_node: OpenNode) -> None:
    module = open_node.sub.add_module(grow_wasm(300 * 16))  # 300 MiB more
    out = await open_node.send(module, limits=TaskLimits(memory_mb=4096))
    assert isinstance(out, Receipt) and out.status == "exit" and out.exit_code == 1  # growth refused
    await open_node.honest()


async def test_stranger_cannot_raise_the_output_cap(open_node: OpenNode) -> None:
    module = open_node.sub.add_module(flood_wasm(3 << 20))
    out = await open_node.send(module, limits=TaskLimits(max_output_bytes=2**31))
    assert isinstance(out, Receipt) and out.status == "output_limit"
    assert len(out.output) == open_node.sandbox.config.max_output_bytes
    await open_node.honest()


async def test_sleep_cannot_outlast_the_deadline(open_node: OpenNode) -> None:
    module = open_node.sub.add_module(sleep_wasm(3_000_000_000))
    out = await open_node.send(module, limits=TaskLimits(timeout_ms=100))
    assert isinstance(out, Receipt) and out.status == "deadline"
    await open_node.honest()


async def test_member_over_the_policy_memory_or_time_is_refused(swarm_factory: SwarmFactory,
                                                                cat_wasm: bytes) -> None:
    sw = await swarm_factory(1, policy=LocalPolicy(max_memory_mb=32, max_timeout_ms=2000))
    sub = await sw.client(("submitter",))
    node = sw.nodes[0]
    module = sub.add_module(cat_wasm)
    for limits in (TaskLimits(memory_mb=64), TaskLimits(timeout_ms=60_000)):
        now = sub.clock.now_ms()
        spec = TaskSpec(os.urandom(8).hex(), "wasm", module, b"x", (), limits, (), (), os.urandom(16), now,
                        now + 10_000)
        resp = await sub.transport.request(node.peer_id, TASK_PROTOCOL, wire.seal(sub.signer, spec), timeout=10)
        msg = wire.open_envelope(resp).message
        assert isinstance(msg, Rejected) and msg.reason == Reason.FORBIDDEN and "capability_denied" in msg.detail
    now = sub.clock.now_ms()
    fits = TaskSpec("fits", "wasm", module, b"ok", (), TaskLimits(memory_mb=16, timeout_ms=1000), (), (),
                    os.urandom(16), now, now + 10_000)
    resp = await sub.transport.request(node.peer_id, TASK_PROTOCOL, wire.seal(sub.signer, fits), timeout=10)
    rc = wire.open_envelope(resp).message
    assert isinstance(rc, Receipt) and rc.output == b"ok"
    assert rc.grants["memory_mb"] == "16" and rc.grants["timeout_ms"] == "1000"


def test_policy_decides_on_memory_and_time() -> None:
    policy = LocalPolicy(max_memory_mb=128, max_timeout_ms=5000)
    g = decide(CapabilityRequest(memory_mb=128, timeout_ms=5000), None, policy)
    assert (g.memory_mb, g.timeout_ms) == (128, 5000)
    for req in (CapabilityRequest(memory_mb=129), CapabilityRequest(timeout_ms=5001)):
        with pytest.raises(Refused) as err:
            decide(req, ("submitter",), policy)
        assert err.value.reason == "capability_denied"


# -- 3: compile bombs --------------------------------------------------------------------------------


async def test_compile_bomb_is_refused(open_node: OpenNode) -> None:
    # 1 MiB, one function: minutes of Cranelift without a limit; refused by its size before compiling
    module = open_node.sub.add_module(bomb_module(1 << 20))
    out = await open_node.send(module)
    assert isinstance(out, Receipt) and out.status == "invalid_module" and out.output == b""
    assert not open_node.sandbox.has_module(module)
    await open_node.honest()


async def test_slow_compile_ends_compile_timeout(tmp_path: Path) -> None:
    # under the function-size limit but still slow: the compiler is killed at the node's limit
    async for on in open_node_with(tmp_path, SandboxConfig(cache_dir=tmp_path / "cache", compile_timeout_ms=300)):
        module = on.sub.add_module(bomb_module(64 << 10))
        out = await on.send(module)
        assert isinstance(out, Receipt) and out.status == "compile_timeout"
        assert not on.sandbox.has_module(module) and not list((tmp_path / "cache").rglob(f"{module}.cwasm"))
        await on.honest()
