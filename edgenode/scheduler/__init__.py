"""Sans-IO scheduling cores: adverts, placement, admission, the task state machine, the contract net."""

from ._admission import (
    DEFAULT_PEER_BUCKETS,
    DEFAULT_REPLAY_ENTRIES,
    MAX_NONCE_BYTES,
    MAX_SPEC_LIFETIME_MS,
    MIN_NONCE_BYTES,
    Admission,
    Admit,
    Refuse,
    ReplayGuard,
    TokenBucket,
)
from ._adverts import DEFAULT_ADVERT_TTL_MS, DEFAULT_MAX_ADVERTS, DEFAULT_MAX_RTT_PEERS, AdvertTable, RttTable
from ._market import OfferBook, make_bid
from ._placement import COST_RANK, SLA_COST, SLA_LATENCY, Candidate, PlacementRequest, expected_ms, place
from ._tracker import (
    Action,
    Assign,
    Done,
    Failed,
    TaskState,
    TaskTracker,
)

__all__ = [
    "COST_RANK",
    "DEFAULT_ADVERT_TTL_MS",
    "DEFAULT_MAX_ADVERTS",
    "DEFAULT_MAX_RTT_PEERS",
    "DEFAULT_PEER_BUCKETS",
    "DEFAULT_REPLAY_ENTRIES",
    "MAX_NONCE_BYTES",
    "MAX_SPEC_LIFETIME_MS",
    "MIN_NONCE_BYTES",
    "SLA_COST",
    "SLA_LATENCY",
    "Action",
    "Admission",
    "Admit",
    "AdvertTable",
    "Assign",
    "Candidate",
    "Done",
    "Failed",
    "OfferBook",
    "PlacementRequest",
    "Refuse",
    "ReplayGuard",
    "RttTable",
    "TaskState",
    "TaskTracker",
    "TokenBucket",
    "expected_ms",
    "make_bid",
    "place",
]
