"""The network layer: one transport interface, two implementations.

``edgenode.net.memnet`` is the in-process network; ``edgenode.net.p2p`` is
py-libp2p.  Import the implementation you need from its module.
"""

from ._errors import BlobMismatch, NetError, NotRunning, RemoteFailure, RequestTimeout, Unreachable
from ._transport import (
    BLOB_PROTOCOL,
    COUNTERS,
    DIRECT_FIRST_S,
    DROP_COUNTERS,
    BlobStore,
    GossipMessage,
    Handler,
    MemoryBlobStore,
    PeerEvent,
    PeerEventKind,
    Subscription,
    Transport,
    Validator,
    blob_handler,
    follow_gossip,
    sha256_hex,
)

__all__ = [
    "COUNTERS",
    "DROP_COUNTERS",
    "BLOB_PROTOCOL",
    "DIRECT_FIRST_S",
    "BlobMismatch",
    "BlobStore",
    "GossipMessage",
    "Handler",
    "MemoryBlobStore",
    "NetError",
    "NotRunning",
    "PeerEvent",
    "PeerEventKind",
    "RemoteFailure",
    "RequestTimeout",
    "Subscription",
    "Transport",
    "Unreachable",
    "Validator",
    "blob_handler",
    "follow_gossip",
    "sha256_hex",
]
