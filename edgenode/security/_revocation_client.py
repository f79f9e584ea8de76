"""The client side of the membership protocol: hand revocations to running nodes.

A node that takes a revocation on :data:`MEMBER_PROTOCOL` applies it and spreads it by
gossip (:meth:`SwarmGuard._serve_hello <edgenode.security.SwarmGuard>` serves it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .. import wire
from ..errors import LocalError
from ..net import NetError, Transport
from ._swarm import MEMBER_PROTOCOL, MemberRefused

__all__ = ["Delivery", "push_revocations"]


@dataclass(frozen=True)
class Delivery:
    """What happened at one bootstrap address."""

    addr: str
    peer: str | None
    """The peer id dialled at ``addr``; None when the dial failed."""
    delivered: int
    """How many revocations the peer took."""
    error: NetError | None
    """The network fault that stopped delivery to this peer; None when all were taken."""


async def push_revocations(
    transport: Transport, bootstrap: Sequence[str], revocations: Sequence[bytes], *, timeout: float = 10.0
) -> list[Delivery]:
    """Deliver each sealed revocation to each node at ``bootstrap`` over a started ``transport``.

    A network fault at one address is recorded in its :class:`Delivery` and the next
    address is tried.  Raises LocalError when a node refuses a revocation.
    """
    out: list[Delivery] = []
    for addr in bootstrap:
        peer: str | None = None
        delivered = 0
        try:
            peer = await transport.connect(addr, timeout=timeout)
            for rev in revocations:
                resp = await transport.request(peer, MEMBER_PROTOCOL, rev, timeout=timeout)
                msg = wire.open_envelope(resp).message
                if isinstance(msg, MemberRefused):
                    raise LocalError(f"{peer} refused the revocation ({msg.reason}: {msg.detail})")
                delivered += 1
        except NetError as exc:
            out.append(Delivery(addr, peer, delivered, exc))
        else:
            out.append(Delivery(addr, peer, delivered, None))
    return out
