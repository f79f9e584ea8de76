"""Sans-IO scheduling cores: adverts, placement, admission, the task state machine, the contract net."""

from ._admission import MAX_SPEC_LIFETIME_MS, Admission, Admit, Refuse, ReplayGuard, TokenBucket
from ._adverts import DEFAULT_ADVERT_TTL_MS, AdvertTable, RttTable
from ._market import OfferBook, make_bid
from ._placement import COST_RANK, SLA_COST, SLA_LATENCY, Candidate, PlacementRequest, expected_ms, place
from ._tracker import (
    FAIL_NO_EXECUTOR,
    FAIL_NO_MAJORITY,
    FAIL_TIMEOUT,
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
    "FAIL_NO_EXECUTOR",
    "FAIL_NO_MAJORITY",
    "FAIL_TIMEOUT",
    "MAX_SPEC_LIFETIME_MS",
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
