"""Refusals cross the wire as codes from one enum; the human detail is never what code decides on."""

from __future__ import annotations

import pytest

from edgenode import wire
from edgenode.errors import DecodeError
from edgenode.identity import Identity
from edgenode.protocol import Busy, Rejected
from edgenode.reasons import ATTEMPT, BUSY, REJECTED, VERDICT, Reason

ID = Identity.generate()


@pytest.mark.parametrize("code", sorted(BUSY))
def test_every_busy_code_round_trips(code: Reason) -> None:
    _env, msg = wire.open_as(Busy, wire.seal(ID, Busy("t", code, "some words", 10)))
    assert msg.reason is code and msg.detail == "some words"


@pytest.mark.parametrize("code", sorted(REJECTED))
def test_every_rejected_code_round_trips(code: Reason) -> None:
    _env, msg = wire.open_as(Rejected, wire.seal(ID, Rejected("t", code, "")))
    assert msg.reason is code


def test_a_code_outside_its_set_does_not_decode() -> None:
    with pytest.raises(ValueError, match="busy code"):
        Busy("t", Reason.REPLAYED, "", 1)  # a rejection is not a busy answer
    with pytest.raises(ValueError, match="rejected code"):
        Rejected("t", "replayed spec", "")  # the old free text is no code
    # a peer that sends one anyway gets a decode error, not a message with an unknown reason
    fields = {"task_id": "t", "code": "whatever", "detail": "", "retry_after_ms": 1}
    frame = wire.encode(["task.busy", Busy.WIRE_VERSION, fields])  # type: ignore[attr-defined]
    with pytest.raises(DecodeError, match="busy code"):
        wire.decode_any(frame)


def test_the_sets_partition_the_enum() -> None:
    assert BUSY.isdisjoint(REJECTED) and ATTEMPT.isdisjoint(VERDICT)
    assert set(Reason) == ATTEMPT | VERDICT
    assert Reason.parse("queue_full") is Reason.QUEUE_FULL and Reason.parse("queue full") is None
