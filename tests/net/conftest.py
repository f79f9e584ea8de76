"""Transport factories for the contract suite (``test_contract.py``).

Each implementation is one entry of :data:`FACTORIES`: a function
``factory(n, connected)`` returning an async context manager that yields ``n``
started transports (fully connected to each other when ``connected``) and
stops them on exit.  Adding an implementation = one function + one dict entry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest

from edgenode.identity import Identity
from edgenode.net import Transport
from edgenode.net.memnet import MemNetwork
from edgenode.net.p2p import P2PTransport

SwarmFactory = Callable[[int, bool], AbstractAsyncContextManager[list[Transport]]]


async def connect_all(nodes: list[Transport]) -> None:
    """Dial every pair once through the public ``connect``."""
    for i, a in enumerate(nodes):
        for b in nodes[i + 1 :]:
            await a.connect(b.listen_addrs[0], timeout=10.0)


@asynccontextmanager
async def running(nodes: list[Transport], connected: bool) -> AsyncIterator[list[Transport]]:
    """Start ``nodes`` (and connect every pair when ``connected``); stop them all on exit."""
    try:
        for t in nodes:
            await t.start()
        if connected:
            await connect_all(nodes)
        yield nodes
    finally:
        for t in nodes:
            await t.stop()


def mem_swarm(n: int, connected: bool = True) -> AbstractAsyncContextManager[list[Transport]]:
    net = MemNetwork(seed=7)
    return running([net.add_node(Identity.generate()) for _ in range(n)], connected)


def p2p_swarm(n: int, connected: bool = True) -> AbstractAsyncContextManager[list[Transport]]:
    """Real py-libp2p hosts in this process, on 127.0.0.1 only."""
    return running([P2PTransport(Identity.generate(), listen=["/ip4/127.0.0.1/tcp/0"]) for _ in range(n)], connected)


FACTORIES: dict[str, SwarmFactory] = {
    "mem": mem_swarm,
    "p2p": p2p_swarm,
}


@pytest.fixture(params=sorted(FACTORIES))
def make_swarm(request: pytest.FixtureRequest) -> SwarmFactory:
    """``async with make_swarm(n, connected=True) as nodes: ...``"""
    factory: SwarmFactory = FACTORIES[request.param]
    return factory
