"""Kademlia DHT (py-libp2p 0.8.1's ``KadDHT``) for :mod:`._p2p_host`: peers by id, blob providers by sha256.

Runs in the transport's trio thread; peers are peer-id strings and addresses multiaddr
strings on the way out.

py-libp2p 0.8.1 takes a ``protocol_prefix`` but never uses it: ``/ipfs/kad/1.0.0`` is
hard-wired in five of its modules.  A DHT on another protocol id (swarm mode's private
one) therefore gets a thin view of the host (:class:`_KadHost`) that renames the protocol
on the way in (stream handlers) and out (new streams, the peerstore's protocol lists), so
the code of ``KadDHT`` runs unchanged and the bytes on the wire stay standard.

Bounds beyond py-libp2p's own (20 providers per key, 1 MiB records, 4 MiB messages, 50,000
value records): inbound DHT streams per peer, ADD_PROVIDER messages per peer per window, the
blob keys whose providers this node keeps for others, the value records it keeps (edgenode
stores none itself), blobs announced, a membership gate (swarm mode: only members' streams
are served), lookups bounded in time.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ._p2p_config import P2PConfig

__all__ = ["DhtService", "STANDARD_KAD", "provider_key"]

logger = logging.getLogger(__name__)

_ADDR_TTL = 600
_ADOPT_INTERVAL = 1.0
STANDARD_KAD = "/ipfs/kad/1.0.0"
"""The protocol id py-libp2p's DHT has hard-wired."""


def provider_key(sha256_hex: str, namespace: str) -> str:
    """The DHT key under which a blob's providers are announced (a multihash hex string).

    Outside a swarm it is the blob's own sha256; in a swarm it is sha256(namespace + hash),
    so that a swarm's provider records never collide with anyone else's.
    """
    digest = sha256_hex.lower()
    if namespace:
        digest = hashlib.sha256(f"{namespace}/{digest}".encode()).hexdigest()
    return "1220" + digest


class _KadPeerstore:
    """The host's peerstore, with the private DHT protocol shown as the standard one."""

    def __init__(self, inner: Any, private: str) -> None:
        self._inner = inner
        self._private = private

    def get_protocols(self, peer: Any) -> list[str]:
        protos = list(self._inner.get_protocols(peer))
        if self._private in protos:
            protos.append(STANDARD_KAD)
        else:
            protos = [p for p in protos if p != STANDARD_KAD]
        return protos

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _KadHost:
    """The host as the DHT sees it: ``/ipfs/kad/1.0.0`` becomes ``private`` on the wire."""

    def __init__(self, inner: Any, private: str) -> None:
        self._inner = inner
        self._private = private
        self._store = _KadPeerstore(inner.get_peerstore(), private)

    def _map(self, protocols: Any) -> list[Any]:
        from libp2p.custom_types import TProtocol

        return [TProtocol(self._private) if str(p) == STANDARD_KAD else p for p in protocols]

    async def new_stream(self, peer: Any, protocols: Any) -> Any:
        return await self._inner.new_stream(peer, self._map(protocols))

    def set_stream_handler(self, protocol: Any, handler: Any) -> None:
        self._inner.set_stream_handler(self._map([protocol])[0], handler)

    def remove_stream_handler(self, protocol: Any) -> None:
        self._inner.remove_stream_handler(self._map([protocol])[0])

    def get_peerstore(self) -> Any:
        return self._store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class DhtService:
    """One node's DHT: built on a running host, run as a py-libp2p service in the node's nursery."""

    def __init__(
        self,
        host: Any,
        config: P2PConfig,
        counters: Any,
        gate: Callable[[str], bool] | None = None,
        namespace: str = "",
    ) -> None:
        from libp2p.kad_dht.kad_dht import DHTMode, KadDHT

        self._c = config
        self._counters = counters
        self._gate = gate
        self.namespace = namespace
        self.protocol = config.dht_protocol
        view: Any = host if config.dht_protocol == STANDARD_KAD else _KadHost(host, config.dht_protocol)
        # no subnet diversity cap: a home swarm shares one address range (and tests share 127.0.0.1)
        self.dht = KadDHT(view, DHTMode.SERVER, max_peers_per_subnet=0)
        self.dht._provider_rate_max = config.dht_add_provider_per_peer
        self.dht._provider_rate_window = config.dht_add_provider_window
        self._bound_stores()
        self._inbound: Counter[str] = Counter()
        self._provided: dict[str, None] = {}
        """Keys announced, oldest first (bounded by ``dht_max_provided``)."""
        inner = self.dht.handle_stream
        host.set_stream_handler(self._wire_protocol(), self._guarded(inner))

    def _bound_stores(self) -> None:
        """Cap what peers can make this node keep: provider records for at most
        ``dht_max_provider_keys`` blobs (its own always fit), value records at most
        ``dht_max_values``; past a cap, records for new keys are dropped and counted."""
        providers: Any = self.dht.provider_store
        values: Any = self.dht.value_store
        me = str(self.dht.host.get_id())
        add_provider = providers.add_provider

        def bounded_add_provider(key: bytes, provider: Any) -> None:
            full = key not in providers.providers and len(providers.providers) >= self._c.dht_max_provider_keys
            if full and provider is not None and str(provider.peer_id) != me:
                self._counters.add("dht_provider_keys_full")
                return
            add_provider(key, provider)

        def bounded(put: Callable[..., None]) -> Callable[..., None]:
            def put_bounded(key: bytes, *args: Any, **kwargs: Any) -> None:
                if key not in values.store and len(values.store) >= self._c.dht_max_values:
                    self._counters.add("dht_values_full")
                    return
                put(key, *args, **kwargs)

            return put_bounded

        providers.add_provider = bounded_add_provider
        values.put, values.put_record = bounded(values.put), bounded(values.put_record)

    def _wire_protocol(self) -> Any:
        from libp2p.custom_types import TProtocol

        return TProtocol(self.protocol)

    def _guarded(self, inner: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        async def handle(stream: Any) -> None:
            from ._p2p_util import reset_quietly

            sender = stream.muxed_conn.peer_id.to_base58()
            if self._gate is not None and not self._gate(sender):
                self._counters.add("dht_refused_non_member")
                await reset_quietly(stream)
                return
            if self._inbound[sender] >= self._c.dht_max_inbound_streams_per_peer:
                self._counters.add("dht_refused_streams")
                await reset_quietly(stream)
                return
            self._inbound[sender] += 1
            try:
                await inner(stream)
            finally:
                self._inbound[sender] -= 1
                if self._inbound[sender] <= 0:
                    del self._inbound[sender]

        return handle

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        from libp2p.tools.anyio_service import background_trio_service

        async with background_trio_service(self.dht):
            task_status.started()
            while True:  # connected peers join the routing table once identify says they speak our DHT
                await self._adopt_connected()
                await trio.sleep(_ADOPT_INTERVAL)

    async def _adopt_connected(self) -> None:
        table = self.dht.routing_table
        for pid, conns in list(self.dht.host.get_network().connections.items()):
            if conns and not table.peer_in_table(pid):
                await self.add_peer(pid)

    async def add_peer(self, peer: Any) -> None:
        """Put a connected peer in the routing table if it speaks our DHT protocol (identify told us)."""
        store = self.dht.host.get_peerstore()
        try:
            protos = store.get_protocols(peer)
        except Exception:  # not identified yet (py-libp2p raises PeerStoreError): retried at the next join
            return
        if STANDARD_KAD not in protos:
            return
        try:
            await self.dht.add_peer(peer, skip_server_mode_check=True)
        except Exception as exc:  # routing-table bookkeeping failures are not the caller's problem
            logger.debug("DHT add_peer %s: %r", peer, exc)

    def table_size(self) -> int:
        return int(self.dht.get_routing_table_size())

    async def find_peer(self, peer: str) -> list[str]:
        """Addresses of ``peer`` (multiaddr strings), or [] when the DHT does not know it.

        Always asks the peers closest to it over the network: py-libp2p's own ``find_peer``
        answers from the routing table or the peerstore when the peer is there, which may hold
        addresses from before the peer took a relay slot (its relayed address missing).
        """
        from ._p2p_util import peer_id

        self._counters.add("dht_find_peer")
        pid = peer_id(peer)
        if pid is None:
            return []
        with trio.move_on_after(self._c.dht_query_timeout):
            try:
                await self.dht.peer_routing.find_closest_peers_network(pid.to_bytes())
            except Exception as exc:  # lookup failures (closed streams, bad responses) mean "not found"
                logger.debug("DHT find_peer %s: %r", peer, exc)
        store = self.dht.host.get_peerstore()  # what the lookup learned (signed records), even when it ran out of time
        return list(dict.fromkeys(str(a) for a in store.addrs(pid))) if pid in store.peer_ids() else []

    async def provide(self, sha256_hex: str) -> bool:
        """Announce this node as a provider of the blob (bounded: the oldest announcement is forgotten)."""
        key = provider_key(sha256_hex, self.namespace)
        self._provided.pop(key, None)
        self._provided[key] = None
        while len(self._provided) > self._c.dht_max_provided:
            old = next(iter(self._provided))
            del self._provided[old]
            self.dht.provider_store.providing_keys.discard(bytes.fromhex(old))  # no longer republished
        ok = False
        with trio.move_on_after(self._c.dht_query_timeout):
            try:
                ok = bool(await self.dht.provide(key))
            except Exception as exc:  # no peer accepted the record: the caller may retry
                logger.debug("DHT provide %s: %r", sha256_hex, exc)
        self._counters.add("dht_provided" if ok else "dht_provide_failures")
        return ok

    async def find_providers(self, sha256_hex: str, count: int) -> list[tuple[str, list[str]]]:
        """Providers of the blob: ``(peer id, addresses)``, each peer once, at most ``count``."""
        self._counters.add("dht_find_providers")
        infos: list[Any] = []
        with trio.move_on_after(self._c.dht_query_timeout):
            try:
                infos = list(await self.dht.find_providers(provider_key(sha256_hex, self.namespace), count))
            except Exception as exc:  # lookup failures mean "none found"
                logger.debug("DHT find_providers %s: %r", sha256_hex, exc)
        out: dict[str, list[str]] = {}
        store = self.dht.host.get_peerstore()
        for info in infos:
            peer = info.peer_id.to_base58()
            if info.addrs and info.peer_id != self.dht.local_peer_id:
                store.add_addrs(info.peer_id, list(info.addrs), _ADDR_TTL)
            out.setdefault(peer, [])
            for a in info.addrs:
                if str(a) not in out[peer]:
                    out[peer].append(str(a))
        return list(out.items())[:count]
