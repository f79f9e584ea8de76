"""The node-side gate that enforces partitions and degraded links on real libp2p swarms.

The gate's logic runs over memnet (deterministic; delays measured in virtual time); one test
runs it on two real py-libp2p hosts on 127.0.0.1, where the cut must close a real connection.
Also: how node groups are dealt over machines, and the choices around the Ray backend.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from edgenode.identity import Identity
from edgenode.net import NetError, PeerEventKind, Unreachable
from edgenode.net.memnet import MemNetwork, run_virtual
from edgenode.net.p2p import P2PTransport
from simnet import SimnetError, load_scenario
from simnet._p2p_gate import RETRANSMIT_S, GatedTransport, peer_of_addr
from simnet._p2p_handles import deal_groups
from simnet._swarm import make_backend
from simnet.cli import EXIT_ERROR, main

REPO = Path(__file__).resolve().parents[2]
WAIT = 20.0
"""Upper bound of any single wait here (seconds)."""


def _ident(name: str) -> Identity:
    return Identity(hashlib.sha256(name.encode()).digest())


async def _echo(sender: str, data: bytes) -> bytes:
    return data


@asynccontextmanager
async def _gated(net: MemNetwork, *names: str) -> AsyncIterator[list[GatedTransport]]:
    """Gated memnet nodes serving ``/echo``, started, and stopped on exit."""
    out = [GatedTransport(net.add_node(_ident(n))) for n in names]
    try:
        for t in out:
            t.serve("/echo", _echo)
            await t.start()
        yield out
    finally:
        for t in out:
            await t.stop()


async def test_partition_refuses_requests_and_dials_both_ways_then_heals() -> None:
    net = MemNetwork(7)
    async with _gated(net, "a", "b") as (a, b):
        net.wire(a.peer_id, b.peer_id)
        assert await b.request(a.peer_id, "/echo", b"hi") == b"hi"
        await a.block(frozenset({b.peer_id}))
        assert b.peer_id not in a.peers() and a.cut == {b.peer_id}
        with pytest.raises(Unreachable):
            await a.request(b.peer_id, "/echo", b"x")
        with pytest.raises(Unreachable):
            await a.connect(f"/memnet/p2p/{b.peer_id}")
        net.wire(a.peer_id, b.peer_id)  # the other side comes back: closed again, or served nothing
        with pytest.raises(NetError):
            await b.request(a.peer_id, "/echo", b"x", timeout=2.0)
        assert a.gated["requests_in"] == 1 or a.gated["closed"] == 2, a.gated
        assert a.counters["partition_dropped_dials"] == 1
        assert a.heal() == {b.peer_id} and a.blocked == frozenset()
        net.wire(a.peer_id, b.peer_id)
        assert await b.request(a.peer_id, "/echo", b"again") == b"again"


async def test_gossip_from_the_other_side_is_not_delivered_even_when_relayed() -> None:
    validated: list[str] = []

    def note(sender: str, data: bytes) -> bool:
        validated.append(sender)
        return True

    net = MemNetwork(9)
    async with _gated(net, "a", "relay", "b") as (a, relay, b):
        a.set_validator("t", note)
        sub_a = a.subscribe("t")
        sub_relay = relay.subscribe("t")
        net.wire(a.peer_id, relay.peer_id)
        net.wire(relay.peer_id, b.peer_id)
        await a.block(frozenset({b.peer_id}))  # a's side: b only (the relay is not cut off)
        await b.publish("t", b"from-b")
        await relay.publish("t", b"from-relay")
        got = await asyncio.wait_for(sub_relay.__anext__(), WAIT)
        assert got.data == b"from-b"  # the relay did get b's message ...
        first = await asyncio.wait_for(sub_a.__anext__(), WAIT)
        assert first.data == b"from-relay"  # ... and a only the relay's own
        assert b.peer_id not in validated  # refused before a's own validator saw it
        await sub_a.aclose()
        await sub_relay.aclose()


def test_degraded_node_adds_its_link_delay_to_requests_it_sends_and_serves() -> None:
    async def timed(t: GatedTransport, peer: str) -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await t.request(peer, "/echo", b"x")
        return loop.time() - t0

    async def measure() -> tuple[float, float, float]:
        net = MemNetwork(8)
        async with _gated(net, "a", "b") as (a, b):
            net.wire(a.peer_id, b.peer_id)
            base = await timed(a, b.peer_id)
            a.degrade(latency_ms=150.0, loss=1.0)  # every request also waits one retransmission
            sent = await timed(a, b.peer_id)
            served = await timed(b, a.peer_id)
            a.restore()
            assert await timed(a, b.peer_id) == pytest.approx(base, abs=1e-6)
            return base, sent, served

    base, sent, served = run_virtual(measure())  # virtual time: delays are exact, nothing waits
    assert sent - base == pytest.approx(2 * 0.150 + RETRANSMIT_S, abs=1e-6)
    assert served - base == pytest.approx(2 * 0.150 + RETRANSMIT_S, abs=1e-6)


@pytest.mark.integration
async def test_partition_closes_a_real_libp2p_connection() -> None:
    a = GatedTransport(P2PTransport(_ident("p2p-a"), listen=["/ip4/127.0.0.1/tcp/0"]))
    b = GatedTransport(P2PTransport(_ident("p2p-b"), listen=["/ip4/127.0.0.1/tcp/0"]))
    b.serve("/echo", _echo)
    await a.start()
    await b.start()
    events = b.inner.peer_events()
    try:
        assert await a.connect(b.listen_addrs[0], timeout=WAIT) == b.peer_id
        assert await a.request(b.peer_id, "/echo", b"hi", timeout=WAIT) == b"hi"
        await b.block(frozenset({a.peer_id}))
        async with asyncio.timeout(WAIT):
            async for ev in events:
                if ev.kind is PeerEventKind.LEAVE and ev.peer == a.peer_id:
                    break
        assert a.peer_id not in b.peers()
        with pytest.raises(NetError):  # a redials; b closes it again and serves nothing
            await a.request(b.peer_id, "/echo", b"x", timeout=5.0)
    finally:
        await a.stop()
        await b.stop()


def test_peer_of_addr() -> None:
    assert peer_of_addr("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWabc") == "12D3KooWabc"
    assert peer_of_addr("/ip4/127.0.0.1/tcp/4001") == ""


def test_groups_are_dealt_over_machines_by_their_cpus() -> None:
    assert deal_groups([1, 1], 2) == [0, 1]
    assert deal_groups([2, 1], 6) == [0, 1, 0, 0, 1, 0]
    assert deal_groups([4, 0], 3) == [0, 1, 0]  # a machine without whole CPUs still takes a turn
    with pytest.raises(SimnetError):
        deal_groups([], 1)


def test_ray_backend_says_plainly_when_ray_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.delitem(sys.modules, "simnet._ray", raising=False)
    sc = load_scenario(REPO / "examples" / "scenarios" / "libp2p100.toml")
    with pytest.raises(SimnetError, match=r"edgenode\[ray\]"):
        make_backend(sc, backend="ray")
    with pytest.raises(SimnetError, match="unknown backend"):
        make_backend(sc, backend="mpi")


def test_only_the_ray_module_imports_ray() -> None:
    importers = []
    for pkg in ("edgenode", "ledger", "federated", "simnet"):
        for path in sorted((REPO / pkg).rglob("*.py")):
            text = path.read_text()
            if "import ray" in text or "from ray" in text:
                importers.append(str(path.relative_to(REPO)))
    assert importers == ["simnet/_ray.py"]
    code = "import sys, simnet, simnet.cli, simnet._swarm, simnet._p2p, simnet._p2p_worker; print('ray' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--backend", "ray", "--transport", "mem", "--quiet"],
        ["run", "--ray-address", "127.0.0.1:6379", "--quiet"],
    ],
)
def test_cli_refuses_ray_options_that_cannot_work(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_ERROR
    assert "simnet: error:" in capsys.readouterr().err
