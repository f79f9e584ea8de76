"""A small swarm of real nodes (real sandbox, real SQLite ledgers) over the in-memory network."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from edgenode.config import NodeConfig, NodeSection
from edgenode.identity import Identity
from edgenode.net.memnet import MemNetwork
from edgenode.node import Node, NodeTiming
from edgenode.runtime import Runtime, build_runtime
from edgenode.sandbox import Sandbox
from edgenode.tasks import Clock, Submitter, SystemClock
from ledger import SqliteLedgerStore

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def cat_wasm() -> bytes:
    return bytes(wasmtime.wat2wasm((HERE / "cat.wat").read_text()))


@pytest.fixture(scope="session")
def sandbox() -> Any:
    sb = Sandbox()
    yield sb
    sb.close()


@dataclass
class Swarm:
    net: MemNetwork
    nodes: list[Node]
    home: Path
    sandbox: Sandbox
    runtimes: list[Runtime] = field(default_factory=list)
    clients: list[Submitter] = field(default_factory=list)

    def node(self, peer: str) -> Node:
        return next(n for n in self.nodes if n.peer_id == peer)

    async def client(self, clock: Clock | None = None, bootstrap: int | None = None) -> Submitter:
        ident = Identity.generate()
        t = self.net.add_node(ident)
        await t.start()
        sub = Submitter(ident, t, clock=clock or SystemClock(), offer_window_ms=200)
        targets = self.nodes if bootstrap is None else self.nodes[bootstrap : bootstrap + 1]
        await sub.join([n.transport.listen_addrs[0] for n in targets])
        self.clients.append(sub)
        return sub


SwarmFactory = Callable[..., Any]


@pytest.fixture
async def swarm_factory(tmp_path: Path, sandbox: Sandbox) -> AsyncIterator[SwarmFactory]:
    made: list[Swarm] = []

    async def make(
        n: int = 3, *, slots: int = 2, queue: int = 16, sqlite: bool = True, infer: Any = None,
        section: Callable[[int], NodeSection] | None = None,
    ) -> Swarm:
        """``n`` nodes; ``section(i)``: node i's ``[node]`` (default: ``slots`` and ``queue``)."""
        net = MemNetwork(seed=len(made))
        runtimes = []
        for i in range(n):
            ident = Identity.generate()
            cfg = NodeConfig(node=section(i) if section is not None else NodeSection(slots=slots, queue=queue))
            store: Any
            if sqlite:
                store = await SqliteLedgerStore.open(tmp_path / f"n{len(made)}_{i}.db", synchronous="NORMAL")
            else:
                from ledger import MemoryLedgerStore

                store = MemoryLedgerStore()
            rt = build_runtime(ident, cfg, net.add_node(ident), store, sandbox=sandbox, registry=infer,
                               timing=NodeTiming(advert_s=0.2, head_s=0.2), fl=False)
            runtimes.append(rt)
        for rt in runtimes:
            await rt.start()
        net.full_mesh([rt.peer_id for rt in runtimes])
        sw = Swarm(net, [rt.node for rt in runtimes], tmp_path, sandbox, runtimes)
        made.append(sw)
        return sw

    yield make
    for sw in made:
        for c in sw.clients:
            await c.close()
            await c.transport.stop()
        for rt in sw.runtimes:
            await rt.stop()
