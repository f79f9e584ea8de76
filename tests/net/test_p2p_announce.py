"""Over real py-libp2p on 127.0.0.1: a node announces a module it fetched as a DHT provider, and
another node that never met the submitter (nor that node) gets the module from it through the DHT.

The same logic over memnet, with fakes: tests/node/test_announce.py.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import wasmtime

from edgenode import wire
from edgenode.config import NodeConfig
from edgenode.identity import Identity
from edgenode.net import MemoryBlobStore
from edgenode.net.p2p import P2PConfig, P2PTransport
from edgenode.node import NodeTiming
from edgenode.protocol import TASK_PROTOCOL, Receipt, TaskLimits, TaskSpec
from edgenode.runtime import Runtime, build_runtime
from edgenode.sandbox import Sandbox
from edgenode.tasks import SystemClock
from ledger import MemoryLedgerStore
from tests.net.p2p_helpers import LOOPBACK, WAIT

pytestmark = pytest.mark.timeout(90)

FAST = P2PConfig(dht_query_timeout=5.0, bootstrap_timeout=5.0)
CAT_WAT = Path(__file__).resolve().parents[1] / "node" / "cat.wat"


def runtime(sandbox: Sandbox) -> Runtime:
    ident = Identity.generate()
    t = P2PTransport(ident, listen=LOOPBACK, config=FAST)
    return build_runtime(ident, NodeConfig(), t, MemoryLedgerStore(), sandbox=sandbox, fl=False,
                         timing=NodeTiming(advert_s=1.0, head_s=1.0, drain_s=2.0, announce_s=0.0))


async def run_on(client: P2PTransport, ident: Identity, executor: str, module: str, data: bytes) -> Receipt:
    now = SystemClock().now_ms()
    spec = TaskSpec(os.urandom(6).hex(), "wasm", module, data, (), TaskLimits(), (), (), os.urandom(16),
                    now, now + 40_000)
    resp = await client.request(executor, TASK_PROTOCOL, wire.seal(ident, spec), timeout=40.0)
    receipt = wire.open_envelope(resp).message
    assert isinstance(receipt, Receipt)
    return receipt


async def in_table(*ts: P2PTransport) -> None:
    """Until every DHT routing table holds a peer (bounded)."""
    async with asyncio.timeout(WAIT):
        while True:
            if all([await t.dht_table_size() >= 1 for t in ts]):
                return
            await asyncio.sleep(0.1)  # the table lives in the network thread: nothing to await


async def test_a_module_comes_from_the_node_that_announced_it_when_the_submitter_is_gone() -> None:
    cat = bytes(wasmtime.wat2wasm(CAT_WAT.read_text()))
    boxes = [Sandbox(), Sandbox()]
    boot = P2PTransport(Identity.generate(), listen=LOOPBACK, config=FAST)  # only a DHT peer
    b, c = runtime(boxes[0]), runtime(boxes[1])
    first, second = Identity.generate(), Identity.generate()
    s1 = P2PTransport(first, listen=LOOPBACK, config=FAST)
    s2 = P2PTransport(second, listen=LOOPBACK, config=FAST)
    store = MemoryBlobStore()
    module = store.put(cat)
    s1.serve_blobs(store)  # s2 serves none: it never had the module
    started: list[object] = []
    try:
        await boot.start()
        started.append(boot)
        for rt in (b, c):  # each knows only the bootstrap peer
            await rt.start([boot.listen_addrs[0]])
            started.append(rt)
        assert isinstance(b.transport, P2PTransport) and isinstance(c.transport, P2PTransport)
        await in_table(boot, b.transport, c.transport)
        for s, rt in ((s1, b), (s2, c)):
            await s.start()
            started.append(s)
            await s.connect(rt.transport.listen_addrs[0])
        assert c.peer_id not in b.transport.peers() and s1.peer_id not in c.transport.peers()

        got = await run_on(s1, first, b.peer_id, module, b"on b")
        assert got.status == "ok" and got.output == b"on b"
        async with asyncio.timeout(WAIT):
            await b.node.announcer.wait_idle()  # a failed try is retried: this waits for the record to land
        assert b.node.announcer.announced == [module]
        await s1.stop()
        started.remove(s1)

        got = await run_on(s2, second, c.peer_id, module, b"on c")
        assert got.status == "ok" and got.output == b"on c"  # c asked the DHT and fetched it from b
        assert b.peer_id in c.transport.peers()  # dialled at the address the provider record gave
        assert c.transport.counters["dht_find_providers"] >= 1 and b.transport.counters["dht_provided"] >= 1
        assert c.node.blobs.get(module) == cat
    finally:
        for thing in reversed(started):
            if isinstance(thing, P2PTransport):
                await thing.stop()
            else:
                assert isinstance(thing, Runtime)
                await thing.stop()
        for box in boxes:
            box.close()
