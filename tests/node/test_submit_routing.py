"""How a submitter reaches an executor it is not connected to: advertised addresses, then peer routing."""

from __future__ import annotations

import asyncio

import pytest

from edgenode.net import Unreachable
from edgenode.node import Node
from edgenode.protocol import NoExecutor
from edgenode.tasks import Submitter, TaskRequest, _submitter

from .conftest import SwarmFactory

pytestmark = pytest.mark.timeout(60)


async def _cut_off(swarm_factory: SwarmFactory, cat_wasm: bytes) -> tuple[Node, Submitter, str]:
    """One node and a client that knows its advert and holds the cat module, but is not connected to it."""
    sw = await swarm_factory(1)
    (node,) = sw.nodes
    sub = await sw.client()
    module = sub.add_module(cat_wasm)
    await sub.transport.disconnect(node.peer_id)
    return node, sub, module


async def test_the_submitter_asks_peer_routing_when_the_advertised_addresses_do_not_answer(
    swarm_factory: SwarmFactory, cat_wasm: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    node, sub, module = await _cut_off(swarm_factory, cat_wasm)
    t = sub.transport
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
    _node, sub, module = await _cut_off(swarm_factory, cat_wasm)
    t = sub.transport

    async def connect(addr: str, timeout: float = 10.0) -> str:
        raise Unreachable(f"no answer from {addr}")

    monkeypatch.setattr(t, "connect", connect)
    with pytest.raises(NoExecutor, match="no answer"):
        await sub.submit(TaskRequest("wasm", module, input=b"x", deadline_ms=3_000))


class _Dials:
    """A transport whose ``connect`` behaves per address: ``ok``, ``refused`` or ``hang``."""

    def __init__(self, how: dict[str, str]) -> None:
        self.how = how
        self.started: list[str] = []
        self.cancelled: list[str] = []

    async def connect(self, addr: str, timeout: float = 10.0) -> str:
        self.started.append(addr)
        what = self.how[addr]
        if what == "refused":
            raise Unreachable(f"refused: {addr}")
        if what == "hang":  # a private address behind a NAT swallows the SYN (until cancelled)
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled.append(addr)
                raise
        return "peer"


def _dialler(how: dict[str, str]) -> tuple[Submitter, _Dials]:
    t = _Dials(how)
    sub = object.__new__(Submitter)  # only the dialling under test: it uses nothing but the transport
    sub.transport = t  # type: ignore[assignment]
    return sub, t


async def test_direct_addresses_race_and_the_first_to_connect_cancels_the_rest() -> None:
    sub, t = _dialler({"/a/hang": "hang", "/b/ok": "ok", "/c/p2p-circuit/x": "ok"})
    errors: list[str] = []
    assert await sub._dial_any(["/c/p2p-circuit/x", "/a/hang", "/b/ok"], 10.0, errors)
    assert t.started == ["/a/hang", "/b/ok"]  # the relay was not needed
    assert t.cancelled == ["/a/hang"]
    assert errors == []


async def test_a_refused_address_hands_over_at_once_and_the_relay_joins_while_direct_dials_hang(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_submitter, "_STAGGER_S", 0.05)
    monkeypatch.setattr(_submitter, "_RELAY_AFTER_S", 0.2)
    sub, t = _dialler({"/a/refused": "refused", "/b/hang": "hang", "/c/hang": "hang", "/r/p2p-circuit/x": "ok"})
    errors: list[str] = []
    assert await sub._dial_any(["/r/p2p-circuit/x", "/a/refused", "/b/hang", "/c/hang"], 10.0, errors)
    assert t.started == ["/a/refused", "/b/hang", "/c/hang", "/r/p2p-circuit/x"]
    assert sorted(t.cancelled) == ["/b/hang", "/c/hang"]  # the relay won; the swallowed dials stop
    assert errors == ["refused: /a/refused"]


async def test_when_nothing_answers_every_error_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_submitter, "_RELAY_AFTER_S", 30.0)  # only the direct one failing starts the relay
    sub, t = _dialler({"/a/refused": "refused", "/r/p2p-circuit/x": "refused", "/h/hang": "hang"})
    errors: list[str] = []
    assert not await sub._dial_any(["/a/refused", "/r/p2p-circuit/x"], 10.0, errors)
    assert errors == ["refused: /a/refused", "refused: /r/p2p-circuit/x"]
    errors = []
    assert not await sub._dial_any(["/h/hang"], 0.2, errors)
    assert t.cancelled == ["/h/hang"] and errors == ["dials timed out after 0.2 s (/h/hang)"]


async def test_with_no_relay_to_fall_back_on_the_direct_dials_get_the_whole_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_submitter, "DIRECT_FIRST_S", 0.01)
    sub, t = _dialler({"/a/hang": "hang", "/b/slow-ok": "ok"})
    monkeypatch.setattr(_submitter, "_STAGGER_S", 0.1)  # /b starts after 0.1 s, past DIRECT_FIRST_S
    assert await sub._dial_any(["/a/hang", "/b/slow-ok"], 5.0, [])
    assert t.started == ["/a/hang", "/b/slow-ok"]
