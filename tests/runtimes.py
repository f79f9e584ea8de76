"""Nodes for tests on the in-memory network, assembled by :func:`edgenode.runtime.build_runtime`.

``build_runtime`` is the only place a node is put together, so a test node is the node
``edgenode run`` runs; start it with ``await rt.start()`` and end it with ``await rt.stop()``
(the ordered shutdown, which closes its stores).
"""

from __future__ import annotations

from typing import Any

from edgenode.config import NodeConfig
from edgenode.identity import Identity
from edgenode.net.memnet import MemNetwork
from edgenode.runtime import Runtime, build_runtime
from edgenode.tasks import Submitter, SystemClock
from ledger import LedgerStore, MemoryLedgerStore


def memnet_runtime(
    net: MemNetwork,
    config: NodeConfig | None = None,
    store: LedgerStore | None = None,
    *,
    ident: Identity | None = None,
    fl: bool = False,
    **kw: Any,
) -> Runtime:
    """A node on ``net`` (not started): a new key unless ``ident``, a memory ledger unless ``store``,
    no FL controller unless ``fl``; ``kw`` goes to ``build_runtime`` (``sandbox=``, ``registry=``,
    ``guard=``, ``timing=``, ``clock=``, ``replay_store=``, ``models=``, ``replicate=``...)."""
    ident = ident or Identity.generate()
    return build_runtime(ident, config or NodeConfig(), net.add_node(ident), store or MemoryLedgerStore(), fl=fl,
                         **kw)


async def memnet_submitter(net: MemNetwork, rt: Runtime, ident: Identity | None = None) -> Submitter:
    """A light peer on ``net`` (a new key unless ``ident``), started and joined to ``rt``'s node.

    Close it with ``await sub.close()`` then ``await sub.transport.stop()``."""
    ident = ident or Identity.generate()
    t = net.add_node(ident)
    await t.start()
    sub = Submitter(ident, t, clock=SystemClock(), offer_window_ms=200)
    await sub.join([rt.transport.listen_addrs[0]])
    return sub
