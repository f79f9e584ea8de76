"""How a submitter reaches an executor it is not connected to: advertised addresses, then peer routing."""

from __future__ import annotations

import asyncio

import pytest

from edgenode.net import Unreachable
from edgenode.protocol import NoExecutor
from edgenode.tasks import Submitter, TaskRequest, _submitter

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
        if what == "hang":  # a private address behind a NAT swallows the SYN
            try:
                await asyncio.sleep(timeout)
            except asyncio.CancelledError:
                self.cancelled.append(addr)
                raise
            raise Unreachable(f"timed out: {addr}")
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


async def test_a_refused_direct_address_hands_over_at_once_and_swallowed_ones_fall_back_to_the_relay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_submitter, "_STAGGER_S", 30.0)  # only a failure may start the next dial
    monkeypatch.setattr(_submitter, "_DIRECT_FIRST_S", 0.3)
    sub, t = _dialler({"/a/refused": "refused", "/b/hang": "hang", "/c/hang": "hang", "/r/p2p-circuit/x": "ok"})
    errors: list[str] = []
    assert await sub._dial_any(["/a/refused", "/b/hang", "/c/hang", "/r/p2p-circuit/x"], 10.0, errors)
    assert t.started == ["/a/refused", "/b/hang", "/r/p2p-circuit/x"]  # /c never got its turn in time
    assert t.cancelled == ["/b/hang"]
    assert errors[0] == "refused: /a/refused"
    assert "direct dials timed out after 0.3 s" in errors[1]


async def test_with_no_relay_to_fall_back_on_the_direct_dials_get_the_whole_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_submitter, "_DIRECT_FIRST_S", 0.01)
    sub, t = _dialler({"/a/hang": "hang", "/b/slow-ok": "ok"})
    monkeypatch.setattr(_submitter, "_STAGGER_S", 0.1)  # /b starts after 0.1 s, past _DIRECT_FIRST_S
    assert await sub._dial_any(["/a/hang", "/b/slow-ok"], 5.0, [])
    assert t.started == ["/a/hang", "/b/slow-ok"]
