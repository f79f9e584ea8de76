"""NAT traversal for :mod:`._p2p_host`: circuit relay v2, relayed addresses, DCUtR, AutoNAT.

Everything here runs in the transport's trio thread on py-libp2p 0.8.1's own
``libp2p.relay.circuit_v2`` (``CircuitV2Protocol``, ``CircuitV2Transport``,
``DCUtRProtocol``) and ``libp2p.host.autonat``; what this module adds:

* **Relay service** (``relay_hop``): the hop protocol behind a gate (swarm mode: only
  members reserve slots or open circuits) and the operator's limits (reservations,
  circuits per peer, bytes and seconds per circuit, reservation lifetime).
* **Reservations**: a node keeps a slot on up to ``max_relays`` connected peers that serve
  the hop protocol, unless AutoNAT found it publicly reachable, and advertises
  ``<relay addr>/p2p/<relay>/p2p-circuit/p2p/<self>`` in its identify addresses (so peers,
  the DHT and the node's adverts carry it).  py-libp2p's ``get_addrs`` strips any address
  carrying another peer's ``/p2p/`` (the address factory's output included), so the host's
  ``get_addrs`` is extended on the instance.  A relay whose connection dropped is dialled
  again (py-libp2p drops a home's relay connection now and then; nothing else redials it).
* **Dialling** a ``/p2p-circuit`` address (py-libp2p's swarm skips them).
* **DCUtR**: py-libp2p's service, which drives a hole punch for every relayed connection.
  It already dials from the listen port (SO_REUSEPORT listener and dial socket) at the
  spec's RTT/2 sync, which is what TCP simultaneous open through endpoint-independent NATs
  needs; but each session first dials the peer's known addresses plainly (spec step 0),
  bounded by its ``dial_timeout`` (10 s by default), and a NATed peer's private addresses
  swallow those SYNs, so the punch itself came 10-12 s after the relayed connection.  The
  service here gets ``_HOLEPUNCH_DIAL_TIMEOUT`` for its punch dials and
  ``_UNILATERAL_TIMEOUT`` for the plain dial (tests/net/test_p2p_tuning.py pins where
  py-libp2p uses them).
* **Relay circuits**: py-libp2p's relay files circuits by peer id, so one circuit ending
  closed another's to the same peer; each cleans up its own here (:func:`_relay_protocol_class`).
* **AutoNAT**: py-libp2p's server answers a dial-back by ``host.connect``, which returns
  the connection the request came on, so every asker looks reachable; the server here
  dials back on a fresh connection outside the swarm instead (:class:`_AutoNAT`).
* **Connection kinds** per peer: ``direct``, ``relayed``, or ``holepunched`` (a direct
  connection to a peer first reached through a relay).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import multiaddr
import trio

from ._errors import Unreachable
from ._p2p_config import P2PConfig
from ._p2p_util import dialable, reset_quietly
from ._transport import DIRECT_FIRST_S

__all__ = ["NatService", "reach_peer", "HOP_PROTOCOL", "KIND_DIRECT", "KIND_RELAYED", "KIND_HOLEPUNCHED", "is_circuit"]

logger = logging.getLogger(__name__)

HOP_PROTOCOL = "/libp2p/circuit/relay/0.2.0/hop"
KIND_DIRECT = "direct"
KIND_RELAYED = "relayed"
KIND_HOLEPUNCHED = "holepunched"
REACH_UNKNOWN, REACH_PUBLIC, REACH_PRIVATE = "unknown", "public", "private"

_RESERVE_INTERVAL = 2.0
_AUTONAT_INTERVAL = 15.0
_AUTONAT_MAX_INTERVAL = 600.0
"""The probe period doubles from ``_AUTONAT_INTERVAL`` up to this while the verdict holds."""
_AUTONAT_TIMEOUT = 10.0
_AUTONAT_SERVERS = 3
_HOLEPUNCH_DIAL_TIMEOUT = 3
"""DCUtR's dial bound: each punch dial."""
_UNILATERAL_TIMEOUT = 1.0
"""DCUtR's plain dial of the peer's known addresses before a punch (spec step 0), all together."""


def is_circuit(addr: str) -> bool:
    return "/p2p-circuit" in addr


def _conn_addrs(conn: Any) -> list[str]:
    try:
        return [str(a) for a in conn.get_transport_addresses()]
    except Exception:  # a closing connection: no addresses
        return []


async def _dial_back(network: Any, addr: Any, peer_id: Any) -> None:
    """Connect to ``peer_id`` at ``addr`` and secure the connection, without the swarm; then close."""
    from libp2p.abc import IMuxedConn

    transport = network.transport_manager.transport_for_dialing(addr)
    if transport is None:
        raise ValueError(f"no transport dials {addr}")
    conn = await transport.dial(addr)
    try:
        if not isinstance(conn, IMuxedConn):  # QUIC comes secured; TCP gets the handshake here
            secured = await network.upgrader.upgrade_security(conn, True, peer_id)
            await secured.close()
    finally:
        await conn.close()


def _autonat_class() -> Any:
    from libp2p.host.autonat.autonat import AutoNATService

    class _AutoNAT(AutoNATService):  # type: ignore[misc]  # py-libp2p's class is untyped for mypy
        """AutoNAT whose dial-back opens a fresh connection (0.8.1 reuses the asker's), outside
        the swarm: a second connection registered there makes the swarm trim one to keep
        ``max_connections_per_peer``, and it trims the older one, which carries the asker's
        relay reservation and circuits (go-libp2p dials back from a separate host for the same
        reason).  A TCP connection and the security handshake (which checks the peer id) prove
        the address reachable."""

        async def _try_dial(self, peer_id: Any, addrs: list[bytes]) -> bytes | None:
            network = self.host.get_network()
            for raw in addrs:
                try:
                    addr = multiaddr.Multiaddr(raw)
                    if is_circuit(str(addr)):
                        continue
                    with trio.move_on_after(_AUTONAT_TIMEOUT / 2):
                        await _dial_back(network, addr, peer_id)
                        return bytes(raw)
                except Exception as exc:  # a failed dial-back is the verdict, not an error
                    logger.debug("AutoNAT dial-back to %s at %r failed: %r", peer_id, raw, exc)
            return None

    return _AutoNAT


def _dcutr_class() -> Any:
    from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol

    class _DCUtR(DCUtRProtocol):  # type: ignore[misc]  # py-libp2p's class is untyped for mypy
        """DCUtR whose plain dial before a punch (spec step 0) takes ``_UNILATERAL_TIMEOUT``:
        behind a NAT the peer's known addresses are private ones that swallow the SYN, and the
        punch waited out the whole dial bound first (3.8 s from relayed to punched, 1.8 s now)."""

        async def _try_unilateral_upgrade(self, peer_id: Any) -> bool:
            try:
                addrs = [a for a in self.host.get_peerstore().addrs(peer_id) if not is_circuit(str(a))]
            except Exception:  # not in the peerstore: nothing to dial
                return False
            if not addrs:
                return False
            with trio.move_on_after(_UNILATERAL_TIMEOUT):
                async with trio.open_nursery() as nursery:
                    for addr in addrs:
                        nursery.start_soon(self._dial_peer, peer_id, addr)
            return bool(await self._verify_direct_connection(peer_id))

    return _DCUtR


class _Circuit:
    """A key of its own for one relayed circuit (see :func:`_relay_protocol_class`)."""

    __slots__ = ("peer",)

    def __init__(self, peer: Any) -> None:
        self.peer = peer

    def __str__(self) -> str:  # py-libp2p logs the key as the peer
        return str(self.peer)


def _relay_protocol_class() -> Any:
    from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol

    class _Relay(CircuitV2Protocol):  # type: ignore[misc]  # py-libp2p's class is untyped for mypy
        """Circuit relay v2 whose circuits end only themselves.

        py-libp2p 0.8.1 files each circuit under its peer ids (``_active_relays[source]``,
        ``_active_relays[destination]``) and, when a circuit's pump ends, closes the streams
        filed under that peer: with two circuits to one destination (two peers reaching one
        home through its relay, or a new circuit while an old one winds down) the first to end
        closes the other's streams.  Here each pump cleans up its own two streams; the peer
        ids still reach the relay's reservation bookkeeping through the circuit-wide limits.
        """

        async def _relay_data(
            self, src_stream: Any, dst_stream: Any, peer_id: Any, deadline: float | None = None,
            circuit_data_limit: list[int] | None = None,
        ) -> None:
            try:  # a key no entry has: the library's cleanup skips, ours below closes this circuit
                key: Any = _Circuit(peer_id)
                await super()._relay_data(src_stream, dst_stream, key, deadline, circuit_data_limit)
            finally:
                mine = (src_stream, dst_stream)
                for peer, pair in list(self._active_relays.items()):
                    if pair[0] in mine:
                        del self._active_relays[peer]
                await self._close_stream(src_stream)
                await self._close_stream(dst_stream)

    return _Relay


class NatService:
    """Relay (hop and client), reservations, relayed dials, DCUtR and AutoNAT for one host."""

    def __init__(self, host: Any, config: P2PConfig, counters: Any, gate: Callable[[str], bool] | None) -> None:
        from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
        from libp2p.relay.circuit_v2.resources import RelayLimits
        from libp2p.relay.circuit_v2.transport import CircuitV2Transport

        self._host = host
        self._c = config
        self._counters = counters
        self._gate = gate
        limits = RelayLimits(
            duration=config.relay_max_duration,
            data=config.relay_max_bytes,
            max_circuit_conns=config.relay_max_circuits,
            max_reservations=config.relay_max_reservations,
            reservation_ttl=config.relay_reservation_ttl,
        )
        roles = RelayRole.STOP | RelayRole.CLIENT | (RelayRole.HOP if config.relay_hop else RelayRole(0))
        self.protocol = _relay_protocol_class()(host, limits=limits, allow_hop=config.relay_hop)
        self.transport = CircuitV2Transport(
            host, self.protocol, RelayConfig(roles=roles, limits=limits, reservation_ttl=config.relay_reservation_ttl)
        )
        self.dcutr = _dcutr_class()(host, dial_timeout=_HOLEPUNCH_DIAL_TIMEOUT) if config.holepunch else None
        self.autonat = _autonat_class()(host, serve=config.autonat, confirmations=1) if config.autonat else None
        self.reachability = REACH_UNKNOWN
        self.relays: dict[str, str] = {}
        """Relay peer id -> our relayed address through it (while the reservation holds)."""
        self.relayed_addrs: tuple[str, ...] = ()
        """The values of ``relays``, replaced whole (read from the asyncio thread)."""
        self._seen_relayed: set[str] = set()
        """Peers whose first connection was relayed (a later direct one is a hole punch)."""
        self._relay_dial: dict[str, str] = {}
        """Relay peer id -> its direct address, for every relay we held a slot on (redialled when lost)."""
        self._nursery: trio.Nursery | None = None
        own_get_addrs = host.get_addrs

        def get_addrs() -> list[Any]:  # wildcards expanded (peers cannot dial 0.0.0.0), then relayed ones
            own = [multiaddr.Multiaddr(a) for a in dialable(own_get_addrs())]
            return [*own, *(multiaddr.Multiaddr(a) for a in self.relayed_addrs)]

        host.get_addrs = get_addrs  # identify, the DHT and signed records all read this

    # -- lifecycle -------------------------------------------------------------------
    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        from libp2p.custom_types import TProtocol
        from libp2p.tools.anyio_service import background_trio_service

        async with background_trio_service(self.protocol), trio.open_nursery() as nursery:
            self._nursery = nursery
            await self.protocol.event_started.wait()
            if self._c.relay_hop:  # the gate wraps py-libp2p's hop handler
                hop = self._gated_hop(self.protocol._handle_hop_stream)
                self._host.set_stream_handler(TProtocol(HOP_PROTOCOL), hop)
            if self.dcutr is not None:
                await nursery.start(self._run_service, self.dcutr)
            if self._c.nat_traversal:
                nursery.start_soon(self._keep_reservations)
            if self.autonat is not None:
                nursery.start_soon(self._check_reachability)
            task_status.started()
            await trio.sleep_forever()

    async def _run_service(self, service: Any, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        from libp2p.tools.anyio_service import background_trio_service

        async with background_trio_service(service):
            task_status.started()
            await trio.sleep_forever()

    def _gated_hop(self, inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
        async def handle(stream: Any) -> None:
            sender = stream.muxed_conn.peer_id.to_base58()
            if self._gate is not None and not self._gate(sender):
                self._counters.add("relay_refused_non_member")
                await reset_quietly(stream)
                return
            self._counters.add("relay_hop_streams")
            await inner(stream)

        return handle

    # -- reservations ----------------------------------------------------------------
    def _speaks(self, pid: Any, protocol: str) -> bool:
        try:
            return protocol in self._host.get_peerstore().get_protocols(pid)
        except Exception:  # not identified yet
            return False

    async def _keep_reservations(self) -> None:
        while True:
            await self._reserve_once()
            await trio.sleep(_RESERVE_INTERVAL)

    async def _reserve_once(self) -> None:
        network = self._host.get_network()
        connected = {pid.to_base58(): (pid, conns) for pid, conns in list(network.connections.items()) if conns}
        changed = False
        for relay in list(self.relays):
            if relay not in connected:  # the relay went away: so did the reservation
                del self.relays[relay]
                self._counters.add("relay_reservations_lost")
                changed = True
        if self.reachability != REACH_PUBLIC:
            for peer, (pid, conns) in connected.items():
                if len(self.relays) >= self._c.max_relays:
                    break
                if peer in self.relays or not self._speaks(pid, HOP_PROTOCOL):
                    continue
                direct = [a for c in conns for a in _conn_addrs(c) if not is_circuit(a) and "/ip" in a]
                if not direct:
                    continue
                if await self._reserve(pid):
                    base = direct[0].split("/p2p/")[0]
                    self.relays[peer] = f"{base}/p2p/{peer}/p2p-circuit/p2p/{self._host.get_id().to_base58()}"
                    self._relay_dial[peer] = f"{base}/p2p/{peer}"
                    changed = True
            # a relay whose connection dropped is dialled again (nothing else would: a bootstrap
            # dial is one-shot), so the next pass takes a fresh slot on it
            for peer, addr in list(self._relay_dial.items()):
                if len(self.relays) >= self._c.max_relays:
                    break
                if peer not in connected:
                    await self._redial(addr)
        if changed:
            self.relayed_addrs = tuple(self.relays.values())
            await self._push_identify()

    async def _redial(self, addr: str) -> None:
        from libp2p.peer.peerinfo import info_from_p2p_addr

        with trio.move_on_after(self._c.dial_timeout):
            try:
                await self._host.connect(info_from_p2p_addr(multiaddr.Multiaddr(addr)))
                self._counters.add("relay_redials")
            except Exception as exc:  # still away: tried again next pass
                logger.debug("redialling relay %s failed: %r", addr, exc)

    async def _reserve(self, pid: Any) -> bool:
        from libp2p.custom_types import TProtocol

        assert self._nursery is not None
        try:
            with trio.move_on_after(self._c.dial_timeout):
                stream = await self._host.new_stream(pid, [TProtocol(HOP_PROTOCOL)])
                ok = bool(await self.transport.reserve(stream, pid, self._nursery))
                await stream.close()
                self._counters.add("relay_reservations" if ok else "relay_reservation_refusals")
                return ok
        except Exception as exc:  # refused (not a member, full) or the stream broke: retried later
            logger.debug("reservation on %s failed: %r", pid, exc)
        self._counters.add("relay_reservation_refusals")
        return False

    async def _push_identify(self) -> None:
        from libp2p.identity.identify_push.identify_push import push_identify_to_peers

        with trio.move_on_after(self._c.dial_timeout):
            try:
                await push_identify_to_peers(self._host)
            except Exception as exc:  # best effort: peers also learn at their next identify
                logger.debug("identify push failed: %r", exc)

    def relay_addrs(self) -> list[str]:
        """``<addr>/p2p/<relay>`` of each relay this node holds (or last held) a slot on."""
        return list(self._relay_dial.values())

    # -- dialling --------------------------------------------------------------------
    async def dial_circuit(self, addr: str, timeout: float) -> None:
        """Connect through a relay (``.../p2p/<relay>/p2p-circuit/p2p/<peer>``); Unreachable on failure."""
        with trio.move_on_after(timeout):
            try:
                await self.transport.dial(multiaddr.Multiaddr(addr))
            except Exception as exc:  # no reservation, refused, relay gone, limits
                self._counters.add("relay_dial_failures")
                raise Unreachable(f"cannot reach {addr} through its relay: {exc}") from exc
            self._counters.add("relay_dials")
            return
        self._counters.add("relay_dial_failures")
        raise Unreachable(f"dialling {addr} through its relay timed out after {timeout} s")

    # -- reachability ----------------------------------------------------------------
    async def _check_reachability(self) -> None:
        from libp2p.host.autonat.autonat import AUTONAT_PROTOCOL_ID

        assert self.autonat is not None
        period = _AUTONAT_INTERVAL
        while True:
            await trio.sleep(1.0 if self.reachability == REACH_UNKNOWN else period)
            network = self._host.get_network()
            servers = [pid for pid, conns in list(network.connections.items())
                       if conns and self._speaks(pid, str(AUTONAT_PROTOCOL_ID))
                       and any(not is_circuit(a) for c in conns for a in _conn_addrs(c))][:_AUTONAT_SERVERS]
            if not servers:
                continue
            own = [a.to_bytes() for a in self._host.get_transport_addrs()]
            own += [multiaddr.Multiaddr(str(a).split("/p2p/")[0]).to_bytes() for a in self._host.get_addrs()
                    if not is_circuit(str(a))]
            verdicts = []
            for pid in servers:
                try:
                    status, _addr = await self.autonat.query_server(pid, own, timeout=_AUTONAT_TIMEOUT)
                    verdicts.append(status == 0)
                except Exception as exc:  # the server failed to answer: no verdict
                    logger.debug("AutoNAT query to %s failed: %r", pid, exc)
            if verdicts:
                verdict = REACH_PUBLIC if any(verdicts) else REACH_PRIVATE
                # a stable verdict is asked about less and less often (each probe opens connections)
                period = min(2 * period, _AUTONAT_MAX_INTERVAL) if verdict == self.reachability else _AUTONAT_INTERVAL
                self.reachability = verdict

    # -- what status shows -----------------------------------------------------------
    def kinds(self) -> dict[str, str]:
        """``peer -> direct | relayed | holepunched`` for every connected peer."""
        out: dict[str, str] = {}
        for pid, conns in list(self._host.get_network().connections.items()):
            if not conns:
                continue
            peer = pid.to_base58()
            addrs = [a for c in conns for a in _conn_addrs(c)]
            has_direct = any(not is_circuit(a) for a in addrs) or not addrs
            if not has_direct:
                self._seen_relayed.add(peer)
                out[peer] = KIND_RELAYED
            else:
                out[peer] = KIND_HOLEPUNCHED if peer in self._seen_relayed else KIND_DIRECT
        return out

    def note_connections(self) -> None:
        """Called on every connect/disconnect: remember relayed peers, forget departed ones."""
        kinds = self.kinds()
        self._seen_relayed.intersection_update(kinds)


async def reach_peer(host: Any, pid: Any, dht: Any, nat: NatService | None, timeout: float) -> None:
    """Connect to ``pid``: known addresses, then the DHT's; direct ones first, then relayed ones."""
    peer = pid.to_base58()
    store = host.get_peerstore()
    known = [str(a) for a in store.addrs(pid)] if pid in store.peer_ids() else []
    errors: list[str] = []
    tried: set[str] = set()
    if await _try_direct(host, pid, known, tried, errors, timeout):
        return
    if not any(is_circuit(a) for a in known) and dht is not None:
        found = await dht.find_peer(peer)
        if await _try_direct(host, pid, found, tried, errors, timeout):
            return
        known += found
    relayed = [a if a.endswith(f"/p2p/{peer}") else f"{a}/p2p/{peer}" for a in dict.fromkeys(known) if is_circuit(a)]
    if nat is not None:
        # last, the relays this node uses itself: peers of one swarm tend to share them, and
        # a relay without a slot for ``peer`` refuses at once
        relayed += [f"{a}/p2p-circuit/p2p/{peer}" for a in nat.relay_addrs() if a.split("/p2p/")[-1] != peer]
        for addr in dict.fromkeys(relayed):
            try:
                await nat.dial_circuit(addr, timeout)
                return
            except Unreachable as exc:
                errors.append(str(exc))
    raise Unreachable(f"cannot reach {peer}: {'; '.join(errors) or 'no known address'}")


async def _try_direct(
    host: Any, pid: Any, addrs: list[str], tried: set[str], errors: list[str], timeout: float
) -> bool:
    """Dial the direct addresses among ``addrs`` not tried yet (bounded: relays may follow)."""
    from libp2p.peer.peerinfo import PeerInfo

    direct = [a for a in addrs if not is_circuit(a) and a not in tried]
    tried.update(direct)
    if not direct:
        return False
    with trio.move_on_after(min(timeout, DIRECT_FIRST_S)):
        try:
            await host.connect(PeerInfo(pid, [multiaddr.Multiaddr(a) for a in direct]))
            return True
        except Exception as exc:  # libp2p dial errors of many types; the relays may still work
            errors.append(str(exc))
            return False
    errors.append(f"direct dial timed out ({', '.join(direct)})")
    return False
