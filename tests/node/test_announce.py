"""A node announces the blobs it serves (modules it fetched, shared models) through content routing,
and an executor gets a module from any provider when the submitter cannot give it.

Over memnet, whose provider registry stands in for the DHT (the same over libp2p:
tests/net/test_p2p_announce.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
import logging
import os
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from edgenode import wire
from edgenode._announce import AnnounceQueue, BlobAnnouncer
from edgenode._blobs import ServedBlobs
from edgenode.config import CONFIG_TEMPLATE, NetSection, NodeConfig, from_table, load_config
from edgenode.errors import LocalError
from edgenode.identity import Identity
from edgenode.inference import ModelRegistry
from edgenode.inference.digits import export_mlp_onnx
from edgenode.net import RemoteFailure, Transport, sha256_hex
from edgenode.net.memnet import MemNetwork, MemTransport
from edgenode.node import NodeTiming
from edgenode.protocol import TASK_PROTOCOL, Receipt, TaskLimits, TaskSpec
from edgenode.runtime import Runtime
from edgenode.sandbox import Sandbox
from edgenode.tasks import SystemClock
from tests.runtimes import memnet_runtime

pytestmark = pytest.mark.timeout(60)

FAST = NodeTiming(advert_s=0.2, head_s=0.2, announce_s=0.0)
WAIT = 10.0


# -- the sans-IO queue --------------------------------------------------------------------------
def test_the_newest_goes_first_duplicates_collapse_and_announcements_are_paced() -> None:
    q = AnnounceQueue(10, interval=1.0)
    assert q.offer("a", 0.0) and q.offer("b", 0.0)
    assert not q.offer("a", 0.0)  # waiting already
    assert q.take(0.0) == "b"
    assert not q.offer("b", 0.0)  # in flight
    assert q.take(0.0) is None  # one at a time
    q.done("b", True, 0.2)
    assert q.take(0.5) is None and q.next_deadline() == 1.0  # paced
    assert q.take(1.0) == "a"
    q.done("a", True, 1.0)
    assert not q.offer("b", 2.0)  # announced already
    assert q.announced == ["b", "a"] and len(q) == 0 and q.next_deadline() is None
    assert dict(q.counts) == {"offered": 5, "duplicate": 3, "announced": 2}


def test_a_failed_announcement_comes_back_after_a_growing_bounded_backoff() -> None:
    q = AnnounceQueue(10, interval=0.0, retry_s=5.0, max_retry_s=12.0)
    q.offer("a", 0.0)
    tries = []
    now = 0.0
    for _ in range(4):
        assert q.take(now) == "a"
        tries.append(now)
        q.done("a", False, now)
        deadline = q.next_deadline()
        assert deadline is not None and q.take(deadline - 0.01) is None
        now = deadline
    assert tries == [0.0, 5.0, 15.0, 27.0]  # 5, 10, then capped at 12
    assert q.take(now) == "a"
    q.done("a", True, now)
    assert q.counts["failed"] == 4 and q.announced == ["a"]


def test_a_retry_waits_behind_new_offers() -> None:
    q = AnnounceQueue(10, interval=0.0, retry_s=1.0)
    q.offer("old", 0.0)
    assert q.take(0.0) == "old"
    q.done("old", False, 0.0)
    q.offer("new", 0.5)
    assert q.take(2.0) == "new"
    q.done("new", True, 2.0)
    assert q.take(2.0) == "old"


def test_the_queue_and_the_announced_set_are_bounded() -> None:
    q = AnnounceQueue(2, interval=0.0)
    for d in "abc":
        q.offer(d, 0.0)
    assert len(q) == 2 and q.counts["dropped"] == 1  # the oldest waiting one went
    for _ in range(2):
        d = q.take(0.0)
        assert d is not None
        q.done(d, True, 0.0)
    assert q.announced == ["c", "b"]
    q.offer("d", 0.0)
    d = q.take(0.0)
    assert d == "d"
    q.done(d, True, 0.0)
    assert q.announced == ["b", "d"]
    assert q.offer("c", 0.0)  # forgotten: announced again
    assert not AnnounceQueue(0).offer("x", 0.0)


# -- the served store ---------------------------------------------------------------------------
def test_kept_blobs_stay_within_their_byte_budget_least_recently_used_out_first() -> None:
    store = ServedBlobs(keep_bytes=10)
    d1, d2 = store.keep(b"12345"), store.keep(b"abcde")
    assert d1 == sha256_hex(b"12345") and d2 is not None
    assert store.get(d1) == b"12345"  # now the most recently used
    d3 = store.keep(b"xyz")
    assert d3 is not None and store.get(d2) is None and store.kept_bytes == 8
    assert store.announced() == [d3, d1]
    assert store.keep(b"x" * 11) is None  # larger than the whole budget
    snap = store.put(b"snapshot")  # put for a moment: served, never announced
    assert store.get(snap) == b"snapshot" and snap not in store.announced()
    store.discard(snap)
    assert store.get(snap) is None and store.get(d1) == b"12345"
    assert ServedBlobs().keep(b"a") is None


# -- nodes ----------------------------------------------------------------------------------------
@pytest.fixture
def sandboxes() -> Iterator[Callable[[], Sandbox]]:
    """Each node its own sandbox: a shared one would hold a module another node compiled."""
    made: list[Sandbox] = []

    def make() -> Sandbox:
        made.append(Sandbox())
        return made[-1]

    yield make
    for sb in made:
        sb.close()


def recording(t: Transport) -> list[str]:
    """The digests ``t`` is asked to provide, in order (the calls still reach it)."""
    calls: list[str] = []
    inner = t.provide

    async def provide(sha256: str) -> bool:
        calls.append(sha256)
        return await inner(sha256)

    t.provide = provide  # type: ignore[method-assign]
    return calls


async def settled(rt: Runtime) -> None:
    """Wait (bounded) until the node's announcer has nothing waiting."""
    async with asyncio.timeout(WAIT):
        await rt.node.announcer.wait_idle()


async def peer(net: MemNetwork, *to: Runtime, ident: Identity | None = None) -> MemTransport:
    """A started plain transport (of ``ident``) connected to ``to``."""
    t = net.add_node(ident or Identity.generate())
    await t.start()
    for rt in to:
        await t.connect(rt.transport.listen_addrs[0])
    return t


async def run_on(client: MemTransport, ident: Identity, executor: str, module: str, data: bytes) -> Receipt:
    """Send one signed task straight to ``executor`` and return its receipt."""
    now = SystemClock().now_ms()
    spec = TaskSpec(os.urandom(6).hex(), "wasm", module, data, (), TaskLimits(), (), (), os.urandom(16),
                    now, now + 20_000)
    resp = await client.request(executor, TASK_PROTOCOL, wire.seal(ident, spec), timeout=WAIT)
    receipt = wire.open_envelope(resp).message
    assert isinstance(receipt, Receipt)
    return receipt


async def test_a_fetched_module_is_kept_and_announced_once(
    sandboxes: Callable[[], Sandbox], cat_wasm: bytes
) -> None:
    net = MemNetwork(seed=1)
    rt = memnet_runtime(net, sandbox=sandboxes(), timing=FAST)
    calls = recording(rt.transport)
    await rt.start()
    ident = Identity.generate()
    client = await peer(net, rt, ident=ident)
    store = ServedBlobs()
    module = store.put(cat_wasm)
    client.serve_blobs(store)
    try:
        for data in (b"one", b"two"):
            receipt = await run_on(client, ident, rt.peer_id, module, data)
            assert receipt.status == "ok" and receipt.output == data
        rt.node.keep_blob(cat_wasm)  # stored again: still one announcement
        await settled(rt)
        assert calls == [module]
        assert rt.node.announcer.announced == [module]
        assert await client.find_providers(module) == [rt.peer_id]
        store.discard(module)
        assert await client.fetch_blob(rt.peer_id, module) == cat_wasm  # the node serves what it announced
    finally:
        await client.stop()
        await rt.stop()


async def test_an_executor_gets_the_module_from_a_provider_when_the_submitter_is_gone(
    sandboxes: Callable[[], Sandbox], cat_wasm: bytes
) -> None:
    net = MemNetwork(seed=2)
    b = memnet_runtime(net, sandbox=sandboxes(), timing=FAST)
    c = memnet_runtime(net, sandbox=sandboxes(), timing=FAST)
    await b.start()
    await c.start([b.transport.listen_addrs[0]])
    first, second = Identity.generate(), Identity.generate()
    s1 = await peer(net, b, ident=first)
    store = ServedBlobs()
    module = store.put(cat_wasm)
    s1.serve_blobs(store)
    s2 = await peer(net, c, ident=second)  # never had the module (and serves no blobs)
    try:
        assert (await run_on(s1, first, b.peer_id, module, b"on b")).output == b"on b"
        await settled(b)
        await s1.stop()  # the submitter is gone
        receipt = await run_on(s2, second, c.peer_id, module, b"on c")
        assert receipt.status == "ok" and receipt.output == b"on c"
        await settled(c)
        assert sorted(await s2.find_providers(module)) == sorted([b.peer_id, c.peer_id])  # c provides it now too
    finally:
        await s2.stop()
        for rt in (c, b):
            await rt.stop()


async def test_at_start_the_most_recent_blobs_are_announced_up_to_the_transports_bound() -> None:
    net = MemNetwork(seed=3, max_provided=3)
    rt = memnet_runtime(net, timing=FAST)
    blobs = [bytes([i]) * 100 for i in range(5)]
    digests = [rt.node.blobs.keep(b) for b in blobs]
    calls = recording(rt.transport)
    other = await peer(net)
    await rt.start([other.listen_addrs[0]])
    try:
        await settled(rt)
        assert calls == [digests[4], digests[3], digests[2]]  # newest first, three at most
        assert await other.find_providers(digests[0]) == []
    finally:
        await rt.stop()
        await other.stop()


async def test_nothing_is_announced_when_announcing_is_off_or_the_transport_has_no_content_routing(
    cat_wasm: bytes,
) -> None:
    net = MemNetwork(seed=4)
    off = memnet_runtime(net, NodeConfig(net=NetSection(announce_blobs=False)), timing=FAST)
    bare = memnet_runtime(MemNetwork(seed=5, max_provided=0), timing=FAST)
    calls = [recording(off.transport), recording(bare.transport)]
    for rt in (off, bare):
        await rt.start()
        rt.node.keep_blob(cat_wasm)
        assert rt.node.announcer.queue is None and rt.node.announcer.counts == {}
        assert rt.node.blobs.get(sha256_hex(cat_wasm)) == cat_wasm  # still served
        await rt.stop()
    assert calls == [[], []]


async def test_stop_ends_an_announcement_in_flight_and_leaves_nothing_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    net = MemNetwork(seed=6)
    rt = memnet_runtime(net, timing=FAST)
    started = asyncio.Event()

    async def hangs(_sha256: str) -> bool:
        started.set()
        await asyncio.Event().wait()
        return True

    rt.transport.provide = hangs  # type: ignore[method-assign]
    other = await peer(net)
    await rt.start([other.listen_addrs[0]])
    rt.node.keep_blob(b"a module")
    async with asyncio.timeout(WAIT):
        await started.wait()
    with caplog.at_level(logging.ERROR):
        await rt.stop()
        gc.collect()
        await asyncio.sleep(0)
    assert rt.node.background_tasks == 0
    left = [t for t in asyncio.all_tasks() if "BlobAnnouncer" in t.get_coro().__qualname__]  # type: ignore[union-attr]
    assert left == []
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    await other.stop()


async def test_a_failed_announcement_is_retried() -> None:
    net = MemNetwork(seed=7)
    t, other = net.add_node(Identity.generate()), net.add_node(Identity.generate())
    await t.start()
    await other.start()
    failures = 2
    inner = t.provide

    async def flaky(sha256: str) -> bool:
        nonlocal failures
        if failures:
            failures -= 1
            return False
        return await inner(sha256)

    t.provide = flaky  # type: ignore[method-assign]
    await t.connect(other.listen_addrs[0])
    ann = BlobAnnouncer(t, interval=0.0, retry_s=0.01, max_retry_s=0.02)
    assert ann.start([])
    task = asyncio.create_task(ann.run())
    digest = hashlib.sha256(b"blob").hexdigest()
    try:
        ann.offer(digest)
        async with asyncio.timeout(WAIT):
            await ann.wait_idle()
        assert ann.counts["failed"] == 2 and ann.announced == [digest]
        assert await other.find_providers(digest) == [t.peer_id]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await t.stop()
        await other.stop()


async def test_shared_models_are_served_and_announced(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    reg = ModelRegistry(tmp_path / "models")
    model = export_mlp_onnx([rng.normal(size=(4, 2)).astype(np.float32), np.zeros(2, np.float32)])
    h = reg.add(model)
    for share in (True, False):
        net = MemNetwork(seed=8)
        cfg = NodeConfig(net=dataclasses.replace(NetSection(), share_models=share))
        rt = memnet_runtime(net, cfg, timing=FAST, models=reg)
        other = await peer(net)
        await rt.start([other.listen_addrs[0]])
        try:
            await settled(rt)
            if share:
                assert rt.node.announcer.announced == [h]
                assert await other.fetch_blob_anywhere(h, rt.peer_id, timeout=WAIT) == model
            else:
                assert rt.node.announcer.announced == []
                with pytest.raises(RemoteFailure):
                    await other.fetch_blob(rt.peer_id, h, timeout=WAIT)
        finally:
            await rt.stop()
            await other.stop()


def test_the_config_template_shows_the_announce_defaults_and_a_bad_budget_is_refused(tmp_path: Path) -> None:
    section = CONFIG_TEMPLATE.split("\n[net]\n", 1)[1].split("\n[", 1)[0]
    table = tomllib.loads("\n".join(ln[2:] for ln in section.splitlines() if ln.startswith("# ") and " = " in ln))
    shown = {k: table[k] for k in ("announce_blobs", "keep_blobs_mb", "share_models")}
    assert from_table(NetSection, shown) == NetSection()
    (tmp_path / "config.toml").write_text("[net]\nkeep_blobs_mb = -1\n")
    with pytest.raises(LocalError, match=r"keep_blobs_mb"):
        load_config(tmp_path)
