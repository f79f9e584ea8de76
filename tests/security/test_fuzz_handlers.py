"""Fuzz the node's request handlers through a memnet transport, for a bounded time.

A member peer sends random bytes, mutations of valid requests, and validly
signed envelopes around random or mutated message bodies to the task,
status, ledger, membership and blob handlers of a swarm-mode node.  Each
handler must answer or refuse with the project's error (the requester sees
an answer or RemoteFailure); any other exception inside a handler fails the
test, and the node must still run an honest task afterwards.
"""

from __future__ import annotations

import contextlib
import os
import random
import time

import pytest

from edgenode import wire
from edgenode.errors import EdgenodeError
from edgenode.identity import Identity
from edgenode.net import BLOB_PROTOCOL, Handler, RemoteFailure
from edgenode.protocol import LEDGER_PROTOCOL, STATUS_PROTOCOL, TASK_PROTOCOL, LedgerRange, StatusRequest
from edgenode.security import MEMBER_PROTOCOL, AbuseConfig, MemberHello
from edgenode.wire import _codec
from edgenode.wire._envelope import ENVELOPE_VERSION, _signed_bytes

from .conftest import SwarmFactory
from .test_fuzz_decoders import BUDGET_S, _field_values, _mutate, _report
from .test_swarm_node import req, spec_for

pytestmark = pytest.mark.timeout(120)


def _sign_body(ident: Identity, body: bytes) -> bytes:
    """An envelope with a valid signature around any body (decoding goes past the signature)."""
    sig = ident.sign(_signed_bytes(ENVELOPE_VERSION, ident.public_key, body))
    return _codec.encode([ENVELOPE_VERSION, ident.public_key, body, sig])


async def test_fuzz_node_handlers(swarm_factory: SwarmFactory, cat_wasm: bytes) -> None:
    sw = await swarm_factory(1, abuse=AbuseConfig(limits={}, ban_threshold=1e18))
    node = sw.nodes[0]
    ident = Identity.generate()
    sub = await sw.client(("submitter",), ident=ident)
    module = sub.add_module(cat_wasm)
    crashes: list[str] = []
    handlers: dict[str, Handler] = node.transport.handlers  # type: ignore[attr-defined]

    def watch(protocol: str, inner: Handler) -> Handler:
        async def handler(sender: str, data: bytes) -> bytes:
            try:
                return await inner(sender, data)
            except EdgenodeError:
                raise
            except KeyError:
                if protocol != BLOB_PROTOCOL:  # the transport's blob handler answers "no blob" this way
                    crashes.append(f"{protocol}: KeyError")
                raise
            except Exception as exc:
                crashes.append(f"{protocol}: {type(exc).__name__}: {exc}")
                raise

        return handler

    seeds = {
        TASK_PROTOCOL: [wire.seal(ident, spec_for(sub, module, b"seed"))],
        STATUS_PROTOCOL: [wire.seal(ident, StatusRequest(os.urandom(8)))],
        LEDGER_PROTOCOL: [wire.seal(ident, LedgerRange(1, 4))],
        MEMBER_PROTOCOL: [wire.seal(ident, MemberHello(sub.guard.cert))],  # type: ignore[union-attr]
        BLOB_PROTOCOL: [module.encode()],
    }
    for proto in seeds:
        handlers[proto] = watch(proto, handlers[proto])
    kinds = sorted(wire.registry())
    rng = random.Random("node handlers")
    budget = BUDGET_S / len(seeds)
    for proto, protoseeds in seeds.items():
        bodies = [wire.open_envelope(s).body for s in protoseeds if proto != BLOB_PROTOCOL]
        tried = 0
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline:
            r = rng.random()
            if r < 0.2:
                data = rng.randbytes(rng.randrange(64))
            elif r < 0.5:
                data = _mutate(rng, rng.choice(protoseeds))
            elif r < 0.75 and bodies:
                data = _sign_body(ident, _mutate(rng, rng.choice(bodies)))
            else:
                data = _sign_body(ident, _field_values(rng, rng.choice(kinds)))
            with contextlib.suppress(RemoteFailure):
                await sub.transport.request(node.peer_id, proto, data, timeout=10)
            tried += 1
        _report(f"node.{proto}", tried, budget)
        assert tried > 10
    assert crashes == []
    out = await sub.submit(req(module, b"still alive"))
    assert out.output == b"still alive"
