"""A node's advert says whether it is publicly reachable (AutoNAT's verdict) as a capability."""

from __future__ import annotations

import pytest

from edgenode.config import NodeConfig
from edgenode.identity import Identity
from edgenode.net.memnet import MemNetwork, MemTransport
from edgenode.runtime import build_runtime
from ledger import MemoryLedgerStore


@pytest.mark.parametrize(("verdict", "expected"), [("unknown", None), ("public", "reach:public"),
                                                   ("private", "reach:private")])
def test_reachability_is_advertised_once_known(monkeypatch: pytest.MonkeyPatch, verdict: str,
                                               expected: str | None) -> None:
    monkeypatch.setattr(MemTransport, "reachability", property(lambda _self: verdict))
    ident = Identity.generate()
    rt = build_runtime(ident, NodeConfig(), MemNetwork().add_node(ident), MemoryLedgerStore(), fl=False)
    reach = [c for c in rt.node.advert().capabilities if c.startswith("reach:")]
    assert reach == ([] if expected is None else [expected])
