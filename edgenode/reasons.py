"""Why a task was refused, or why a submitter gave up on it: one set of codes.

An executor's :class:`~edgenode.protocol.Busy` and :class:`~edgenode.protocol.Rejected`
carry a :class:`Reason` in their ``code`` field and a human ``detail`` beside it.  Code
decides what to do from the code alone; the detail is for logs and people and is never
parsed.  The submitter's own verdicts on an attempt (unreachable, silent, an invalid
receipt) and on a whole task (timeout, no majority) use the same enum, so an outcome's
notes and a metric label are the same word on every node and every transport.

This module imports nothing of edgenode: every layer may use it.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Reason", "BUSY", "REJECTED", "ATTEMPT", "VERDICT"]


class Reason(StrEnum):
    # -- busy: the executor may take the task later (Busy.retry_after_ms says when) ---------
    QUEUE_FULL = "queue_full"
    RATE_LIMIT = "rate_limit"
    REPLAY_FULL = "replay_full"
    """The replay table holds as many admitted specs as it may; one expires soon."""
    STOPPING = "stopping"
    """The node is stopping: the task was not started, or was handed back unfinished."""
    LEDGER_FAILED = "ledger_failed"
    """The task ran but its result could not be recorded, so no receipt exists."""
    # -- rejected: this executor will not run this spec ---------------------------------------
    MALFORMED = "malformed"
    """The request does not decode, or its signature does not verify."""
    TOO_LARGE = "too_large"
    UNKNOWN_KIND = "unknown_kind"
    UNSUPPORTED_KIND = "unsupported_kind"
    """A kind this node does not run (no sandbox, or no inference engine)."""
    BAD_MODULE = "bad_module"
    """The module is not named by a sha256 hex digest."""
    MISSING_CAPABILITY = "missing_capability"
    EXPIRED = "expired"
    """The spec's ``expires_ms`` has passed (check the submitter's clock)."""
    LIFETIME_TOO_LONG = "lifetime_too_long"
    BAD_NONCE = "bad_nonce"
    REPLAYED = "replayed"
    POLICY = "policy"
    """The node's admission hook refused the spec."""
    FORBIDDEN = "forbidden"
    """The zero-trust layer refused the submitter or the spec (the detail names the rule)."""
    # -- the submitter's verdict on one attempt ----------------------------------------------
    UNREACHABLE = "unreachable"
    SILENT = "silent"
    """No answer within the attempt's time."""
    NET_FAILED = "net_failed"
    """The request failed in transit or the executor's handler failed."""
    INVALID_RECEIPT = "invalid_receipt"
    # -- the submitter's verdict on the whole task --------------------------------------------
    NO_EXECUTOR = "no_executor"
    TIMEOUT = "timeout"
    NO_MAJORITY = "no_majority"

    @classmethod
    def parse(cls, code: str) -> Reason | None:
        """The member named ``code``, or None for a code this version does not know."""
        try:
            return cls(code)
        except ValueError:
            return None


BUSY = frozenset({Reason.QUEUE_FULL, Reason.RATE_LIMIT, Reason.REPLAY_FULL, Reason.STOPPING, Reason.LEDGER_FAILED})
"""Codes a ``Busy`` answer may carry."""
REJECTED = frozenset({
    Reason.MALFORMED, Reason.TOO_LARGE, Reason.UNKNOWN_KIND, Reason.UNSUPPORTED_KIND, Reason.BAD_MODULE,
    Reason.MISSING_CAPABILITY, Reason.EXPIRED, Reason.LIFETIME_TOO_LONG, Reason.BAD_NONCE, Reason.REPLAYED,
    Reason.POLICY, Reason.FORBIDDEN,
})
"""Codes a ``Rejected`` answer may carry."""
ATTEMPT = BUSY | REJECTED | {Reason.UNREACHABLE, Reason.SILENT, Reason.NET_FAILED, Reason.INVALID_RECEIPT}
"""Why a submitter gave up on one executor."""
VERDICT = frozenset({Reason.NO_EXECUTOR, Reason.TIMEOUT, Reason.NO_MAJORITY})
"""Why a submitter gave up on a whole task."""
