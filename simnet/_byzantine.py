"""Byzantine behaviour, injected at the transport edge of an otherwise honest node.

:class:`ByzantineTransport` wraps a node's transport.  While a behaviour is on:

* ``forge_receipts``: every receipt the node sends is re-signed with a forged
  output (the signature is the node's own and valid; the output no longer
  matches the ledger entry the receipt carries), so submitters must reject it;
* ``replay``: the task specs it receives are kept, and :func:`replay_specs`
  sends them again to other executors;
* ``spam``: :func:`spam_burst` floods the advert and head topics with junk and
  with signed adverts that claim someone else's peer id;
* ``poison``: every model update the node's own FL controller publishes is replaced by
  Gaussian noise (x :data:`POISON_SCALE`), re-signed with the node's key, so its peers'
  validators accept it and only their aggregation strategy can resist it.

Everything else is delegated untouched, so the node code under test is the real one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
from collections import Counter, deque

import numpy as np

from edgenode import wire
from edgenode.errors import EdgenodeError
from edgenode.fl import FL_TOPIC_PREFIX, identity_verify
from edgenode.identity import Identity
from edgenode.net import Handler, NetError, Transport
from edgenode.protocol import ADVERT_TOPIC, HEAD_TOPIC, TASK_PROTOCOL, Advert, Busy, LedgerHead, Receipt, Rejected
from federated import FederatedError, decode_update, encode_update

from ._wrap import DelegatingTransport

__all__ = ["ByzantineTransport", "replay_specs", "spam_burst", "FORGED_OUTPUT", "POISON_SCALE"]

FORGED_OUTPUT = b"forged by a byzantine executor\n"
POISON_SCALE = 10.0
"""Standard deviation of the noise a poisoned update carries in place of trained weights."""


class ByzantineTransport(DelegatingTransport):
    """A transport that misbehaves on demand (see the module docstring)."""

    def __init__(self, inner: Transport, identity: Identity) -> None:
        super().__init__(inner)
        self.identity = identity
        self.behaviours: set[str] = set()
        self.counts: Counter[str] = Counter()
        self.captured: deque[bytes] = deque(maxlen=64)
        self._rng = np.random.default_rng(int.from_bytes(identity.public_key[:8], "big"))

    # -- misbehaviour -------------------------------------------------------------
    def serve(self, protocol: str, handler: Handler) -> None:
        if protocol != TASK_PROTOCOL:
            self.inner.serve(protocol, handler)
            return

        async def evil(sender: str, data: bytes) -> bytes:
            if "replay" in self.behaviours:
                self.captured.append(data)
            resp = await handler(sender, data)
            if "forge_receipts" in self.behaviours:
                resp = self._forge(resp)
            return resp

        self.inner.serve(protocol, evil)

    async def publish(self, topic: str, data: bytes) -> None:
        if "poison" in self.behaviours and topic.startswith(FL_TOPIC_PREFIX):
            data = self._poison(data)
        await self.inner.publish(topic, data)

    def _poison(self, data: bytes) -> bytes:
        try:
            upd = decode_update(data, verify=identity_verify)
        except FederatedError:
            return data
        noise = tuple((self._rng.standard_normal(w.shape) * POISON_SCALE).astype(np.float32) for w in upd.weights)
        self.counts["poisoned_updates_sent"] += 1
        return encode_update(dataclasses.replace(upd, weights=noise), self.identity)

    def _forge(self, resp: bytes) -> bytes:
        try:
            env = wire.open_envelope(resp)
        except EdgenodeError:
            return resp
        msg = env.message
        if not isinstance(msg, Receipt):
            return resp
        forged = Receipt(
            msg.task_id, msg.spec_hash, msg.status, msg.exit_code, FORGED_OUTPUT,
            hashlib.sha256(FORGED_OUTPUT).hexdigest(), msg.stderr, msg.fuel_used, msg.wall_ms,
            msg.entry, msg.prev_entry, msg.grants,
        )  # fmt: skip
        self.counts["forged_receipts_sent"] += 1
        return wire.seal(self.identity, forged)


async def replay_specs(bz: ByzantineTransport, targets: list[str], rng: random.Random, timeout: float = 2.0) -> None:
    """Send the specs ``bz`` captured to other executors and count what they answer."""
    while bz.captured:
        data = bz.captured.popleft()
        peers = [p for p in targets if p != bz.peer_id]
        for peer in rng.sample(peers, min(2, len(peers))):
            bz.counts["replays_sent"] += 1
            try:
                resp = await bz.inner.request(peer, TASK_PROTOCOL, data, timeout=timeout)
                msg = wire.open_envelope(resp).message
            except (NetError, EdgenodeError):
                bz.counts["replays_failed"] += 1
                continue
            if isinstance(msg, Rejected):
                bz.counts["replays_rejected"] += 1
            elif isinstance(msg, Busy):
                bz.counts["replays_busy"] += 1
            elif isinstance(msg, Receipt):
                bz.counts["replays_answered"] += 1


async def spam_burst(bz: ByzantineTransport, victims: list[str], n: int = 20) -> None:
    """Publish ``n`` junk messages and ``n`` adverts claiming other peers' ids."""
    for i in range(n):
        try:
            await bz.inner.publish(ADVERT_TOPIC if i % 2 else HEAD_TOPIC, os.urandom(64))
            if victims:
                fake = Advert(
                    peer_id=victims[i % len(victims)], addrs=(), capabilities=("wasm", "infer"), slots=64,
                    free_slots=64, queue_len=0, queue_cap=1024, cost_class="low", version="0", seq=1 << 40,
                    issued_ms=0,
                )  # fmt: skip
                await bz.inner.publish(ADVERT_TOPIC, wire.seal(bz.identity, fake))
                await bz.inner.publish(HEAD_TOPIC, wire.seal(bz.identity, LedgerHead(1 << 40, "00" * 32)))
        except NetError:
            bz.counts["spam_failed"] += 1
            return
        bz.counts["spam_sent"] += 3 if victims else 1
