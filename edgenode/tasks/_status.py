"""Ask peers for their status: their own advert and the sealed adverts they hold."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass

from .. import wire
from ..errors import RemoteError
from ..net import Transport
from ..protocol import STATUS_PROTOCOL, StatusReply, StatusRequest
from ..wire import Signer

__all__ = ["PeerStatus", "ask_status"]


@dataclass(frozen=True)
class PeerStatus:
    peer: str
    reply: StatusReply
    """Its advert names ``peer`` and the reply is sealed by ``peer`` (both checked)."""
    sealed: bytes
    """The sealed reply, as received."""


async def ask_status(transport: Transport, signer: Signer, peers: Sequence[str], timeout: float) -> list[PeerStatus]:
    """A STATUS request to each of ``peers`` at once; the verified answers (silence, failures,
    forgeries and replies about someone else are left out)."""
    req = wire.seal(signer, StatusRequest(os.urandom(8)))
    results = await asyncio.gather(
        *(transport.request(p, STATUS_PROTOCOL, req, timeout=timeout) for p in peers), return_exceptions=True
    )
    out = []
    for peer, res in zip(peers, results, strict=True):
        if not isinstance(res, bytes):
            continue
        try:
            env, reply = wire.open_as(StatusReply, res)
        except RemoteError:
            continue
        if env.author_id == peer and reply.advert.peer_id == peer:
            out.append(PeerStatus(peer, reply, res))
    return out
