"""The dashboard's swarm source on real nodes over memnet: inside a node and as a light peer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from edgenode.dashboard import Feed, SwarmSource
from edgenode.identity import Identity
from edgenode.tasks import TaskRequest
from tests.node.conftest import SwarmFactory


async def _until(cond: Callable[[], Any], timeout: float = 10.0) -> Any:
    end = asyncio.get_running_loop().time() + timeout
    while not (v := cond()):
        assert asyncio.get_running_loop().time() < end, "condition not met in time"
        await asyncio.sleep(0.05)
    return v


async def test_embedded_and_light_sources_see_nodes_tasks_and_chains(swarm_factory: SwarmFactory,
                                                                      cat_wasm: bytes) -> None:
    sw = await swarm_factory(3)
    n0 = sw.nodes[0]
    inside = Feed("node")
    src_in = SwarmSource(inside, n0.transport, n0.identity, node=n0, poll_s=0.1)
    ident = Identity.generate()
    lt = sw.net.add_node(ident)
    await lt.start()
    sw.net.wire(ident.peer_id, n0.peer_id)
    light = Feed("light")
    src_light = SwarmSource(light, lt, ident, poll_s=0.1)
    await src_in.start()
    await src_light.start()
    try:
        ids = {n.peer_id for n in sw.nodes}
        await _until(lambda: ids <= set(light.nodes) and ids <= set(inside.nodes))
        assert light.nodes[ident.peer_id]["self"] and inside.nodes[n0.peer_id]["self"]
        assert {p for p in light.nodes if light.nodes[p]["advert"]} == ids  # the observer advertises nothing
        sub = await sw.client()
        module = sub.add_module(cat_wasm)
        outs = [await sub.submit(TaskRequest("wasm", module, input=b"hi %d" % i, deadline_ms=10_000))
                for i in range(6)]
        done = {o.task_id for o in outs}
        # the light peer lists every result from the executors' chains, verified, with the executor
        rows = await _until(lambda: done <= {t.task_id for t in light.tasks} and list(light.tasks))
        assert all(r.status == "ok" and r.executor in ids for r in rows)
        assert {r.executor for r in rows} == {o.executor for o in outs}
        for o in outs:
            assert light.nodes[o.executor]["ledger"]["verified"] is True
        # inside n0: its own results come with their run latency
        ran_here = {o.task_id for o in outs if o.executor == n0.peer_id}
        if ran_here:
            await _until(lambda: ran_here <= {t.task_id for t in inside.tasks})
            own = [t for t in inside.tasks if t.task_id in ran_here]
            assert all(t.latency_ms is not None and t.latency_ms >= 0 for t in own)
        snap = light.snapshot()
        assert snap["counters"]["finished"] >= len(done)
        assert [ident.peer_id, n0.peer_id, "direct"] in snap["links"] or [n0.peer_id, ident.peer_id, "direct"] in \
            snap["links"]
        # a node that stops advertising goes down on the page
        await sw.runtimes[2].stop()
        src_light_ttl = 0.3
        import edgenode.dashboard._source as s

        old, s.ADVERT_TTL_S = s.ADVERT_TTL_S, src_light_ttl
        try:
            await _until(lambda: light.nodes[sw.nodes[2].peer_id]["state"] == "down")
        finally:
            s.ADVERT_TTL_S = old
    finally:
        await src_light.stop()
        await src_in.stop()
        await lt.stop()
