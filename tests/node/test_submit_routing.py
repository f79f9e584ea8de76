"""How a submitter reaches an executor it is not connected to: advertised addresses, then peer routing."""

from __future__ import annotations

import pytest

from edgenode.net import Unreachable
from edgenode.protocol import NoExecutor
from edgenode.tasks import TaskRequest

from .conftest import SwarmFactory

pytestmark = pytest.mark.timeout(60)


async def test_the_submitter_asks_peer_routing_when_the_advertised_addresses_do_not_answer(
    swarm_factory: SwarmFactory, cat_wasm: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    sw = await swarm_factory(1)
    (node,) = sw.nodes
    sub = await sw.client()
    module = sub.add_module(cat_wasm)
    t = sub.transport
    await t.disconnect(node.peer_id)
    advertised = set(node.transport.listen_addrs)
    dial = t.connect
    asked: list[str] = []

    async def connect(addr: str, timeout: float = 10.0) -> str:
        if addr in advertised:  # a private address behind a NAT: nothing answers from here
            raise Unreachable(f"no answer from {addr}")
        peer: str = await dial(addr, timeout)
        return peer

    async def find_peer(peer: str) -> list[str]:  # what the DHT would say: an address that works
        asked.append(peer)
        return [f"/p2p/{peer}"]

    monkeypatch.setattr(t, "connect", connect)
    monkeypatch.setattr(t, "find_peer", find_peer)
    out = await sub.submit(TaskRequest("wasm", module, input=b"routed", deadline_ms=10_000))
    assert out.ok and out.output == b"routed" and out.executor == node.peer_id
    assert asked == [node.peer_id]
    assert node.peer_id in t.peers()


async def test_without_any_route_the_executor_is_unreachable(
    swarm_factory: SwarmFactory, cat_wasm: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    sw = await swarm_factory(1)
    (node,) = sw.nodes
    sub = await sw.client()
    module = sub.add_module(cat_wasm)
    t = sub.transport
    await t.disconnect(node.peer_id)

    async def connect(addr: str, timeout: float = 10.0) -> str:
        raise Unreachable(f"no answer from {addr}")

    monkeypatch.setattr(t, "connect", connect)
    with pytest.raises(NoExecutor, match="no answer"):
        await sub.submit(TaskRequest("wasm", module, input=b"x", deadline_ms=3_000))
