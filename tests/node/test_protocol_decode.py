"""Property tests: the protocol's decoders and handlers take any bytes without crashing."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgenode import wire
from edgenode.errors import RemoteError
from edgenode.identity import Identity
from edgenode.net.memnet import MemNetwork
from edgenode.protocol import (
    Advert,
    Bid,
    InvalidReceipt,
    LedgerHead,
    Offer,
    Receipt,
    Rejected,
    TaskLimits,
    TaskSpec,
    verify_receipt,
)
from edgenode.reasons import Reason
from edgenode.scheduler import Admission
from edgenode.tasks import ChainWriter, Executor, SystemClock
from ledger import MemoryLedgerStore

ID = Identity.generate()
names = st.text(max_size=20)
hexes = st.binary(min_size=32, max_size=32).map(bytes.hex)

specs = st.builds(
    TaskSpec,
    task_id=hexes, kind=st.sampled_from(["wasm", "infer"]), module=hexes, input=st.binary(max_size=64),
    args=st.lists(names, max_size=3).map(tuple),
    limits=st.builds(TaskLimits, st.integers(1, 2**40), st.integers(1, 10**6), st.integers(1, 4096),
                     st.integers(0, 2**30)),
    requires=st.lists(names, max_size=3).map(tuple), models=st.lists(hexes, max_size=2).map(tuple),
    nonce=st.binary(min_size=16, max_size=16), issued_ms=st.integers(0, 2**50), expires_ms=st.integers(0, 2**50),
    attempt=st.integers(0, 100), policy=st.dictionaries(names, names, max_size=3),
)


@given(specs)
def test_spec_round_trips_through_an_envelope(spec: TaskSpec) -> None:
    env, back = wire.open_as(TaskSpec, wire.seal(ID, spec))
    assert back == spec and env.author_id == ID.peer_id


@given(st.binary(max_size=512))
def test_any_bytes_decode_or_raise_remote_error(data: bytes) -> None:
    for cls in (TaskSpec, Receipt, Advert, Offer, Bid, LedgerHead):
        with pytest.raises(RemoteError):
            wire.open_as(cls, data)  # random bytes never carry a valid signature


@given(specs, st.data())
def test_tampered_envelopes_are_refused(spec: TaskSpec, data: st.DataObject) -> None:
    sealed = bytearray(wire.seal(ID, spec))
    i = data.draw(st.integers(0, len(sealed) - 1))
    sealed[i] ^= data.draw(st.integers(1, 255))
    try:
        env, back = wire.open_as(TaskSpec, bytes(sealed))
    except RemoteError:
        return
    assert back == spec and env.author_id == ID.peer_id  # only a non-canonical yet equivalent change survives


@given(specs, st.binary(max_size=300))
def test_verify_receipt_never_crashes(spec: TaskSpec, junk: bytes) -> None:
    with pytest.raises(InvalidReceipt):
        verify_receipt(junk, ID.peer_id, spec, b"")
    fake = Receipt(spec.task_id, "0" * 64, "ok", 0, junk, hashlib.sha256(junk).hexdigest(), b"", 0, 0.0, junk, b"")
    with pytest.raises(InvalidReceipt):
        verify_receipt(wire.seal(ID, fake), ID.peer_id, spec, b"")


@given(st.binary(max_size=400))
def test_executor_answers_garbage_with_a_rejection(data: bytes) -> None:
    net = MemNetwork()
    t = net.add_node(ID)
    clock = SystemClock()
    ex = Executor(ID, t, ChainWriter(MemoryLedgerStore(), ID, clock), clock, Admission(1, 1))
    answer = asyncio.run(ex.handle("someone", data))
    _env, msg = wire.open_as(Rejected, answer)
    assert msg.reason == Reason.MALFORMED and msg.detail.startswith("invalid spec")
