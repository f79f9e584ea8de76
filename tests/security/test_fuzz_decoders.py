"""Fuzz every decoder that takes peer bytes, for a bounded time.

Each target gets random bytes, mutations of valid encodings, and (for wire
messages) well-framed messages with random field values.  A target may only
return or raise the project's remote error; anything else fails the test.
The number of inputs tried per target is written to
``$EDGENODE_FUZZ_REPORT`` (JSON lines) when that variable is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections.abc import Callable

import pytest

import edgenode.protocol
import edgenode.security  # noqa: F401  (registers certificates and revocations)
from edgenode import wire
from edgenode.errors import RemoteError
from edgenode.identity import Identity

BUDGET_S = float(os.environ.get("EDGENODE_FUZZ_SECONDS", "3" if os.environ.get("CI") else "1"))
SIGNER = Identity(bytes(range(32)))


def _random_value(rng: random.Random, depth: int = 0) -> object:
    choice = rng.randrange(9 if depth < 3 else 7)
    if choice == 0:
        return None
    if choice == 1:
        return rng.random() < 0.5
    if choice == 2:
        return rng.randint(-(2**63), 2**63 - 1) if rng.random() < 0.2 else rng.randint(-3, 1000)
    if choice == 3:
        return rng.choice([0.0, 1.5, -2.25, 1e300, float("inf")])
    if choice == 4:
        return rng.randbytes(rng.choice([0, 1, 32, 64]))
    if choice == 5:
        return rng.choice(["", "ok", "wasm", "infer", "x" * 40])
    if choice == 6:
        return rng.randbytes(rng.randrange(8))
    if choice == 7:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["a", "task_id", "kind", "seq"]): _random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(3)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1 and b:
            del b[rng.randrange(len(b)) :]
        else:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
    return bytes(b)


def _field_values(rng: random.Random, kind: str) -> bytes:
    cls = wire.registry()[kind]
    names = list(getattr(cls, "__dataclass_fields__", {}))
    fields = {n: _random_value(rng) for n in names if rng.random() < 0.9}
    return wire.encode([kind, cls.WIRE_VERSION, fields])


def _run(
    target: Callable[[bytes], object],
    seeds: list[bytes],
    rng: random.Random,
    kinds: list[str],
    refusals: tuple[type[BaseException], ...] = (RemoteError,),
) -> int:
    tried = 0
    deadline = time.monotonic() + BUDGET_S
    while time.monotonic() < deadline:
        r = rng.random()
        if r < 0.25:
            data = rng.randbytes(rng.randrange(64))
        elif r < 0.6 and seeds:
            data = _mutate(rng, rng.choice(seeds))
        elif kinds:
            data = _field_values(rng, rng.choice(kinds))
        else:
            data = rng.randbytes(rng.randrange(200))
        with contextlib.suppress(refusals):
            target(data)
        tried += 1
    return tried


def _report(name: str, tried: int, seconds: float = BUDGET_S) -> None:
    path = os.environ.get("EDGENODE_FUZZ_REPORT")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"name": "security.fuzz_inputs", "value": tried, "unit": "inputs",
                                 "params": {"target": name, "seconds": seconds}}) + "\n")


def _wire_seeds() -> list[bytes]:
    from edgenode.security import issue_certificate

    return [issue_certificate(SIGNER, SIGNER.public_key, ("executor",), serial=1, now_ms=0)]


@pytest.mark.parametrize("target", ["wire.decode_any", "wire.open_envelope"])
def test_fuzz_wire(target: str) -> None:
    rng = random.Random(target)
    kinds = sorted(wire.registry())
    fn: Callable[[bytes], object] = wire.decode_any if target == "wire.decode_any" else wire.open_envelope
    seeds = _wire_seeds()
    if target == "wire.decode_any":
        seeds = [wire.decode(s)[2] for s in seeds]  # type: ignore[index]
    tried = _run(fn, seeds, rng, kinds)
    _report(target, tried)
    assert tried > 100


# -- the other decoders that take peer bytes ---------------------------------------------
def _ledger_seeds() -> tuple[list[bytes], list[bytes]]:
    from ledger import EquivocationProof, build_entry

    first = build_entry(SIGNER, None, "task_result", b"body one", 1)
    second = build_entry(SIGNER, first, "task_result", b"body two", 2)
    twin = build_entry(SIGNER, None, "task_result", b"another history", 1)
    entries = [first.to_bytes(), second.to_bytes(), second.to_bytes(with_body=False)]
    return entries, [EquivocationProof.of(first, twin).to_bytes()]


def test_fuzz_ledger_entry() -> None:
    from ledger import Entry, LedgerRemoteError

    rng = random.Random("ledger.Entry.from_bytes")
    entries, _ = _ledger_seeds()
    tried = _run(Entry.from_bytes, entries, rng, [], (LedgerRemoteError,))
    _report("ledger.Entry.from_bytes", tried)
    assert tried > 100


def test_fuzz_equivocation_proof() -> None:
    from ledger import EquivocationProof, LedgerRemoteError

    rng = random.Random("ledger.EquivocationProof.from_bytes")
    _, proofs = _ledger_seeds()
    tried = _run(EquivocationProof.from_bytes, proofs, rng, [], (LedgerRemoteError,))
    _report("ledger.EquivocationProof.from_bytes", tried)
    assert tried > 100


def test_fuzz_federated_update() -> None:
    import numpy as np

    from federated.errors import FederatedRemoteError
    from federated.flower import ModelUpdate, decode_update, encode_update

    rng = random.Random("federated.decode_update")
    update = ModelUpdate("mlp", 3, SIGNER.public_key, (np.ones((2, 3), np.float32), np.zeros(3, np.float32)), 10,
                         {"train_loss": 0.5})
    seeds = [encode_update(update, SIGNER)]
    tried = _run(decode_update, seeds, rng, [], (FederatedRemoteError,))
    _report("federated.decode_update", tried)
    assert tried > 100


def test_fuzz_p2p_frames() -> None:
    from edgenode.net._p2p_frame import (
        FrameReader,
        Response,
        decode_request,
        decode_response,
        encode_frame,
        encode_request,
        encode_response,
    )

    def target(data: bytes) -> None:
        decode_request(data)

    def response(data: bytes) -> None:
        decode_response(data)

    def frames(data: bytes) -> None:
        reader = FrameReader(1 << 16)
        for i in range(0, len(data), 7):
            if reader.feed(data[i : i + 7]) is not None:
                return
        reader.eof()

    rng = random.Random("p2p frames")
    req = encode_request("/edgenode/task/1", b"payload")
    seeds = [req, encode_frame(req, 1 << 16)]
    total = 0
    for name, fn in (("p2p.decode_request", target), ("p2p.decode_response", response), ("p2p.FrameReader", frames)):
        ok, err = Response(ok=True, payload=b"ok"), Response(ok=False, message="x")
        tried = _run(fn, [*seeds, encode_response(ok), encode_response(err)], rng, [])
        _report(name, tried)
        total += tried
    assert total > 300

