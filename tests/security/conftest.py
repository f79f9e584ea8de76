"""A certified swarm of real nodes (real sandbox, real SQLite ledgers) over the in-memory network."""

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
from edgenode.security import AbuseConfig, AbuseGuard, LocalPolicy, SwarmGuard, issue_certificate
from edgenode.tasks import Submitter, SystemClock
from ledger import SqliteLedgerStore

CAT_WAT = Path(__file__).resolve().parent.parent / "node" / "cat.wat"


@pytest.fixture(scope="session")
def cat_wasm() -> bytes:
    return bytes(wasmtime.wat2wasm(CAT_WAT.read_text()))


@pytest.fixture(scope="session")
def sandbox() -> Any:
    sb = Sandbox()
    yield sb
    sb.close()


CLOCK = SystemClock()
now_ms = CLOCK.now_ms


@dataclass
class Swarm:
    net: MemNetwork
    admin: Identity
    nodes: list[Node]
    serial: int = 100
    runtimes: list[Runtime] = field(default_factory=list)
    clients: list[Submitter] = field(default_factory=list)

    def cert(self, who: Identity, roles: tuple[str, ...], *, admin: Identity | None = None,
             expires_ms: int = 0) -> bytes:
        self.serial += 1
        return issue_certificate(admin or self.admin, who.public_key, roles, serial=self.serial,
                                 now_ms=now_ms() - 1000, expires_ms=expires_ms)

    async def client(
        self,
        roles: tuple[str, ...] | None = ("submitter",),
        *,
        cert: bytes | None = None,
        ident: Identity | None = None,
        join: bool = True,
    ) -> Submitter:
        """A light peer: a member (``roles``), or a stranger (``roles=None``, no guard)."""
        ident = ident or Identity.generate()
        t = self.net.add_node(ident)
        await t.start()
        guard = None
        if roles is not None or cert is not None:
            guard = SwarmGuard(ident, cert or self.cert(ident, roles or ("submitter",)), CLOCK)
        sub = Submitter(ident, t, clock=SystemClock(), offer_window_ms=200, guard=guard)
        self.clients.append(sub)
        if join:
            await sub.join([n.transport.listen_addrs[0] for n in self.nodes])
        else:
            await sub.start()
        return sub


SwarmFactory = Callable[..., Any]


@pytest.fixture
async def swarm_factory(tmp_path: Path, sandbox: Sandbox) -> AsyncIterator[SwarmFactory]:
    made: list[Swarm] = []

    async def make(n: int = 2, *, policy: LocalPolicy | None = None, abuse: AbuseConfig | None = None) -> Swarm:
        net = MemNetwork(seed=len(made))
        admin = Identity.generate()
        sw = Swarm(net, admin, [])
        for i in range(n):
            ident = Identity.generate()
            guard = SwarmGuard(ident, sw.cert(ident, ("executor",)), CLOCK, swarm=admin.public_key,
                               policy=policy, abuse=AbuseGuard(abuse) if abuse else None)
            store = await SqliteLedgerStore.open(tmp_path / f"s{len(made)}_{i}.db", synchronous="NORMAL")
            rt = build_runtime(ident, NodeConfig(node=NodeSection(slots=2, queue=16)), net.add_node(ident), store,
                               sandbox=sandbox, timing=NodeTiming(advert_s=0.2, head_s=0.2), guard=guard, fl=False)
            sw.runtimes.append(rt)
            sw.nodes.append(rt.node)
        for rt in sw.runtimes:
            await rt.start()
        net.full_mesh([x.peer_id for x in sw.nodes])
        for node in sw.nodes:
            for other in sw.nodes:
                if other is not node:
                    assert node.guard is not None
                    await node.guard.require(other.peer_id)
        made.append(sw)
        return sw

    yield make
    for sw in made:
        for c in sw.clients:
            await c.close()
            if not c.transport.stopped:  # type: ignore[attr-defined]
                await c.transport.stop()
        for rt in sw.runtimes:
            await rt.stop()
