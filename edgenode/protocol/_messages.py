"""Wire messages of the task protocol, adverts, the work market and ledger heads.

Every message here is a registered :mod:`edgenode.wire` message and travels
sealed in a signed envelope (:func:`edgenode.wire.seal`).  Each carries a
``policy`` or ``grants`` map of strings: an extension point for membership
certificates and capability grants (issue 9) that older nodes pass through.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import wire
from ..reasons import BUSY, REJECTED, Reason

__all__ = [
    "TASK_PROTOCOL",
    "STATUS_PROTOCOL",
    "LEDGER_PROTOCOL",
    "ADVERT_TOPIC",
    "WORK_TOPIC",
    "BID_TOPIC",
    "HEAD_TOPIC",
    "KIND_WASM",
    "KIND_INFER",
    "STATUS_OK",
    "TaskLimits",
    "TaskSpec",
    "Receipt",
    "Busy",
    "Rejected",
    "Advert",
    "StatusRequest",
    "StatusReply",
    "Offer",
    "Bid",
    "LedgerHead",
    "LedgerRange",
    "LedgerEntries",
]

TASK_PROTOCOL = "/edgenode/task/1"
"""Direct stream: request a sealed :class:`TaskSpec`, answer a sealed Receipt, Busy or Rejected."""
STATUS_PROTOCOL = "/edgenode/status/1"
"""Direct stream: request a sealed :class:`StatusRequest`, answer a sealed :class:`StatusReply`."""
LEDGER_PROTOCOL = "/edgenode/ledger/1"
"""Direct stream: request a sealed :class:`LedgerRange`, answer a sealed :class:`LedgerEntries`."""
ADVERT_TOPIC = "edgenode/adverts/1"
WORK_TOPIC = "edgenode/work/1"
BID_TOPIC = "edgenode/bids/1"
HEAD_TOPIC = "edgenode/heads/1"

KIND_WASM = "wasm"
KIND_INFER = "infer"
STATUS_OK = "ok"


@wire.message("task.limits", 1)
@dataclass(frozen=True)
class TaskLimits:
    """Resource limits of one run."""

    fuel: int = 50_000_000
    """WASM fuel (instructions, roughly)."""
    timeout_ms: int = 5_000
    """Wall-clock limit of the run on the executor."""
    memory_mb: int = 64
    """Linear memory cap."""
    max_output_bytes: int = 1 << 20
    """Largest stdout accepted."""


@wire.message("task.spec", 1)
@dataclass(frozen=True)
class TaskSpec:
    """A task as the submitter signs it.  ``task_id`` names the task across reassignments."""

    task_id: str
    """Hex id chosen by the submitter; the same on every attempt and replica."""
    kind: str
    """``wasm`` or ``infer``."""
    module: str
    """sha256 hex of the WASM module (``wasm``) or the model hash (``infer``)."""
    input: bytes
    """stdin for ``wasm``; a ``.npy`` tensor for ``infer``."""
    args: tuple[str, ...]
    limits: TaskLimits
    requires: tuple[str, ...]
    """Capabilities the executor must advertise, e.g. ``model:<hash>``."""
    models: tuple[str, ...]
    """Model hashes the module may call through the host."""
    nonce: bytes
    """Random per attempt: with the expiry, the executor refuses replays."""
    issued_ms: int
    expires_ms: int
    """Executors refuse the spec after this instant (unix ms)."""
    attempt: int = 0
    policy: dict[str, str] = field(default_factory=dict)
    """Extension point: certificates, grants (passed through, signed with the spec)."""


@wire.message("task.receipt", 1)
@dataclass(frozen=True)
class Receipt:
    """The executor's signed answer, carrying the ledger entry it appended for the result."""

    task_id: str
    spec_hash: str
    """sha256 hex of the spec's envelope body."""
    status: str
    exit_code: int
    output: bytes
    output_hash: str
    stderr: bytes
    fuel_used: int
    wall_ms: float
    entry: bytes
    """The ledger entry recording this result (the ledger's canonical bytes)."""
    prev_entry: bytes
    """The entry before it, without its body (empty for the first entry), to check the chain link."""
    grants: dict[str, str] = field(default_factory=dict)
    """What the executor granted the task (extension point)."""


def _check_code(code: str, allowed: frozenset[Reason], what: str) -> None:
    if Reason.parse(code) not in allowed:
        raise ValueError(f"{what} code {code!r} is not one of {sorted(allowed)}")


@wire.message("task.busy", 2)
@dataclass(frozen=True)
class Busy:
    """The executor cannot take the task now (queue full, rate exceeded, stopping...).

    ``code`` is one of :data:`edgenode.reasons.BUSY`; ``detail`` is for people, never parsed.
    """

    task_id: str
    code: str
    detail: str
    retry_after_ms: int

    def __post_init__(self) -> None:
        _check_code(self.code, BUSY, "busy")

    @property
    def reason(self) -> Reason:
        return Reason(self.code)


@wire.message("task.rejected", 2)
@dataclass(frozen=True)
class Rejected:
    """The executor refuses the spec (expired, replayed, missing capability, forbidden...).

    ``code`` is one of :data:`edgenode.reasons.REJECTED`; ``detail`` is for people, never parsed.
    """

    task_id: str
    code: str
    detail: str

    def __post_init__(self) -> None:
        _check_code(self.code, REJECTED, "rejected")

    @property
    def reason(self) -> Reason:
        return Reason(self.code)


@wire.message("node.advert", 1)
@dataclass(frozen=True)
class Advert:
    """A node's capability advert, gossiped and refreshed."""

    peer_id: str
    addrs: tuple[str, ...]
    capabilities: tuple[str, ...]
    """``wasm``, ``infer``, ``model:<hash>``, ``provider:<name>``."""
    slots: int
    free_slots: int
    queue_len: int
    queue_cap: int
    cost_class: str
    version: str
    seq: int
    issued_ms: int


@wire.message("node.status_request", 1)
@dataclass(frozen=True)
class StatusRequest:
    nonce: bytes


@wire.message("node.status_reply", 1)
@dataclass(frozen=True)
class StatusReply:
    """The node's own advert plus the sealed adverts it currently holds."""

    advert: Advert
    known: tuple[bytes, ...]
    """Sealed adverts of other peers (verify each)."""
    ledger_height: int


@wire.message("market.offer", 1)
@dataclass(frozen=True)
class Offer:
    """A contract-net call for bids, gossiped on :data:`WORK_TOPIC`."""

    offer_id: str
    kind: str
    module: str
    requires: tuple[str, ...]
    deadline_ms: int
    expires_ms: int
    submitter_addrs: tuple[str, ...]


@wire.message("market.bid", 1)
@dataclass(frozen=True)
class Bid:
    """A node's answer to an offer, gossiped on :data:`BID_TOPIC`."""

    offer_id: str
    bidder: str
    addrs: tuple[str, ...]
    load: float
    expected_ms: float
    cost_class: str
    expires_ms: int


@wire.message("ledger.head", 1)
@dataclass(frozen=True)
class LedgerHead:
    """A node's ledger head, gossiped on :data:`HEAD_TOPIC`."""

    height: int
    head: str
    """Hex hash of the newest entry."""


@wire.message("ledger.range", 1)
@dataclass(frozen=True)
class LedgerRange:
    start: int
    limit: int


@wire.message("ledger.entries", 1)
@dataclass(frozen=True)
class LedgerEntries:
    entries: tuple[bytes, ...]
