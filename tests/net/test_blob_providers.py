"""An executor that cannot get a blob from the peer that named it asks content routing for
other providers (on libp2p the DHT: tests/nat and tests/net/test_p2p_nat.py)."""

from __future__ import annotations

import pytest

from edgenode.identity import Identity
from edgenode.net import MemoryBlobStore, NetError
from edgenode.net.memnet import MemNetwork, MemTransport


async def _three() -> tuple[MemNetwork, list[MemTransport]]:
    net = MemNetwork(seed=3)
    ts = [net.add_node(Identity.generate()) for _ in range(3)]
    for t in ts:
        await t.start()
    net.full_mesh([t.peer_id for t in ts])
    return net, ts


async def test_a_blob_comes_from_another_provider_when_the_first_peer_lacks_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _net, (executor, sender, provider) = await _three()
    store = MemoryBlobStore()
    digest = store.put(b"module bytes")
    provider.serve_blobs(store)
    sender.serve_blobs(MemoryBlobStore())  # it names the blob but no longer has it
    asked: list[str] = []

    async def providers(sha256: str, limit: int = 20) -> list[str]:
        asked.append(sha256)
        return [executor.peer_id, sender.peer_id, provider.peer_id]  # itself and the failed one are skipped

    monkeypatch.setattr(executor, "find_providers", providers)
    assert await executor.fetch_blob_anywhere(digest, sender.peer_id, timeout=5.0) == b"module bytes"
    assert asked == [digest]
    for t in (executor, sender, provider):
        await t.stop()


async def test_nobody_has_it_raises_the_first_peers_error() -> None:
    _net, ts = await _three()
    executor, sender = ts[0], ts[1]
    sender.serve_blobs(MemoryBlobStore())
    with pytest.raises(NetError):  # nobody announced it: only the first peer is asked
        await executor.fetch_blob_anywhere("ab" * 32, sender.peer_id, timeout=5.0)
    for t in ts:
        await t.stop()
