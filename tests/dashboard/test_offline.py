"""The page works with the network cut off from everything but the node serving it: the browser
resolves no name but loopback's and has no route elsewhere, yet the page, its charting library
and its live feed all load, and nothing else is asked for."""

from __future__ import annotations

import asyncio
import time

import pytest

from edgenode.dashboard import DashboardServer, FaultMark, Feed, TaskRow
from edgenode.dashboard.headless import Chromium
from tests.dashboard.pages import NODES_SHOWN, need_chromium

pytestmark = pytest.mark.integration


@pytest.mark.timeout(120)
async def test_page_works_offline() -> None:
    need_chromium()
    feed = Feed("offline swarm")
    for p in ("alpha", "bravo", "charlie"):
        feed.set_advert(p, addrs=["/ip4/127.0.0.1/tcp/1"], capabilities=["wasm"], slots=2, free_slots=2,
                        queue_len=0, queue_cap=8, cost_class="low", version="0.1.0")
    feed.set_links([("alpha", "bravo"), ("bravo", "charlie")])
    feed.set_faults([FaultMark("partition", "partition", 0.0, None, ("charlie",))])
    async with DashboardServer(feed, port=0) as server, await Chromium.launch(offline=True) as b:
        # the browser itself is cut off: another host does not resolve, and no proxy carries it
        outside = await b.eval("fetch('http://example.com/', {mode: 'no-cors'}).then(() => 'reached', () => 'blocked')")
        assert outside == "blocked"
        assert any("ERR_" in e for _u, e in b.failed) or b.errors
        await asyncio.sleep(0.5)  # its console error comes after the promise settles
        b.requests.clear()
        b.failed.clear()
        b.errors.clear()
        await b.goto(server.url)
        assert await b.wait_for(f"{NODES_SHOWN} === 3", 30)
        assert await b.eval("typeof uPlot") == "function"  # the vendored library, from the node
        assert await b.eval("document.querySelectorAll('#throughput canvas').length") >= 1
        feed.on_task(TaskRow("t-offline", "wasm", "bravo", "ok", 4.2, 1.0, int(time.time() * 1000)))
        assert await b.wait_for("document.querySelector('#tasks tr[data-task=\"t-offline\"]') !== null", 10)
        requests, failed, errors = list(b.requests), list(b.failed), list(b.errors)
    assert requests and all(r.startswith(server.url) for r in requests), requests
    assert not failed and not errors, (failed, errors)
