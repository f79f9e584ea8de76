"""Typed tuning of :class:`edgenode.net.p2p.P2PTransport`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["P2PConfig"]


@dataclass(frozen=True)
class P2PConfig:
    """Tuning of the libp2p transport.  Defaults suit a LAN swarm of tens of nodes."""

    degree: int = 6
    """GossipSub target mesh degree D."""
    degree_low: int = 4
    """GossipSub D_lo: graft below this many mesh peers."""
    degree_high: int = 12
    """GossipSub D_hi: prune above this many mesh peers."""
    heartbeat_interval: float = 1.0
    """Seconds between GossipSub heartbeats (mesh maintenance, gossip emission)."""
    max_messages_per_topic_per_second: float = 10_000.0
    """Spam limit per peer per topic (py-libp2p's default of 10 drops ordinary bursts)."""
    queue_size: int = 4096
    """Capacity of each subscription queue and each per-peer outbound RPC queue (default 32)."""
    max_concurrent_dials: int = 8
    """Dials in flight at once (hundreds at once break mesh formation)."""
    dial_timeout: float = 10.0
    """Seconds for one dial attempt."""
    peer_poll_interval: float = 2.0
    """Seconds between scans of the connection table for join/leave events (a safety net: the
    network's connect/disconnect notifications raise them at once)."""
    max_frame_bytes: int = 64 * 1024 * 1024
    """Largest response frame accepted (a blob); requests are bounded by ``request_limits``."""
    request_limits: tuple[tuple[str, int], ...] = (
        ("/edgenode/task/1", (4 << 20) + (64 << 10)),
        ("/edgenode/status/1", 4096),
        ("/edgenode/ledger/1", 4096),
        ("/edgenode/blob/1", 256),
        ("/edgenode/member/1", 64 << 10),
        ("/edgenode/fl-control/1", 64 << 10),
    )
    """Largest request payload accepted per protocol (bytes): a larger one is answered ``bad_request``
    before its handler runs, and an inbound frame is never buffered past the largest of these."""
    default_request_bytes: int = 1 << 20
    """Largest request payload for a protocol not in ``request_limits``."""
    handler_timeout: float = 60.0
    """Seconds an inbound request may take (reading, handler, reply) before its stream is reset."""
    bootstrap_timeout: float = 30.0
    """Seconds to keep retrying each bootstrap address at start."""
    bootstrap_retry_interval: float = 0.5
    """Seconds between retries of an unreachable bootstrap address."""
    start_timeout: float = 30.0
    """Seconds ``start()`` waits for the host to listen."""
    stop_timeout: float = 15.0
    """Seconds ``stop()`` waits for the network thread to finish."""
    channels: bool = True
    """Carry requests on one persistent multiplexed stream per peer (``/edgenode/rpc/2``).  Off: a
    stream per request (``/edgenode/rpc/1``, what every version serves), and rpc/2 is not served."""
    bulk_protocols: tuple[str, ...] = ("/edgenode/blob/1",)
    """Request protocols sent on a stream of their own (large payloads must not hold up the channel)."""
    max_inflight_per_peer: int = 256
    """Requests outstanding at once on one peer's channel; more wait for a slot."""
    max_concurrent_per_channel: int = 64
    """Handlers running at once for one inbound channel; beyond it the channel stops being read."""
    max_inbound_streams_per_peer: int = 64
    """Inbound request streams (channels and one-shot streams) open at once per peer; more are reset."""
    channel_idle_s: float = 60.0
    """A channel with nothing in flight for this long is closed."""
    channel_retry_s: float = 60.0
    """After a peer refused the channel protocol, use a stream per request with it for this long."""
    subscriber_queue: int = 10_000
    """Messages buffered per asyncio subscriber before the oldest are dropped (counted)."""
    # -- beyond the LAN (docs/net.md, "Behind NATs") ------------------------------------
    dht: bool = True
    """Run a Kademlia DHT (py-libp2p's, server mode): find peers by id, providers of blobs by sha256."""
    dht_protocol: str = "/ipfs/kad/1.0.0"
    """The DHT's protocol id; swarm mode uses ``/edgenode/<swarm id>/kad/1.0.0`` so that
    strangers' DHTs never mix with the swarm's."""
    dht_query_timeout: float = 10.0
    """Seconds one find-peer or find-providers lookup may take."""
    dht_max_provided: int = 4096
    """Blobs this node announces as provider at most (older announcements are not renewed)."""
    dht_add_provider_per_peer: int = 10
    """ADD_PROVIDER messages accepted from one peer per ``dht_add_provider_window`` seconds."""
    dht_add_provider_window: float = 10.0
    """Window of ``dht_add_provider_per_peer``."""
    dht_max_provider_keys: int = 4096
    """Blobs whose provider records this node keeps for others (each up to 20 providers); records
    for further blobs are dropped until old ones expire (24 h)."""
    dht_max_values: int = 1024
    """Value records (``/pk``, ``/ipns``) this node keeps for others; edgenode itself stores none."""
    dht_max_inbound_streams_per_peer: int = 8
    """DHT streams one peer may hold open to this node at once; more are reset."""
    relay_hop: bool = False
    """Serve as a circuit-relay-v2 relay for other nodes (``edgenode run --relay``)."""
    relay_max_reservations: int = 32
    """Reservations (relayed listeners) a relay holds at once."""
    relay_max_circuits: int = 8
    """Relayed connections at once per reserved peer."""
    relay_max_bytes: int = 64 << 20
    """Bytes one relayed connection may carry (both directions together) before the relay resets it."""
    relay_max_duration: int = 600
    """Seconds a relayed connection may last before the relay resets it."""
    relay_reservation_ttl: int = 3600
    """Seconds a reservation lasts (clients renew before it expires)."""
    nat_traversal: bool = True
    """Reserve a slot on relays this node is connected to (unless AutoNAT found it public) and
    advertise the relayed address."""
    holepunch: bool = True
    """Upgrade relayed connections to direct ones with DCUtR hole punching when the NATs allow."""
    max_relays: int = 2
    """Relays this node keeps a reservation on."""
    autonat: bool = True
    """Answer AutoNAT dial-back requests and ask connected peers whether this node is reachable."""
    # -- peer exchange (docs/net.md, "Peer exchange") ----------------------------------
    peer_exchange: bool = True
    """GossipSub peer exchange (PX): a PRUNE this node sends (leaving a topic, stopping, or trimming
    a mesh over ``degree_high``) names up to ``px_peers`` other peers of the topic with their signed
    peer records, and peers named in a PRUNE received are dialled, within the rules below.  Off:
    none is sent, and any received is ignored (py-libp2p on its own would dial them)."""
    px_peers: int = 8
    """Peers named in one PRUNE sent, and peers taken from one PRUNE received (the rest ignored)."""
    px_dial_budget: int = 16
    """PX-triggered dials (and record checks) at most per ``px_dial_window`` seconds, all senders
    together: a peer sending PRUNE after PRUNE cannot make this node dial without bound."""
    px_dial_window: float = 60.0
    """Window of ``px_dial_budget`` (sliding), in seconds."""
