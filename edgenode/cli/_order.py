"""Orders to a node from its operator (``edgenode migrate``, ``edgenode drain``).

An order is sealed with the node's own key (from its home), so only whoever holds that key can
give it, and sent on :data:`~edgenode.tasks.MOVE_PROTOCOL` from an ephemeral libp2p peer; the
node answers with a message it signed.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TypeVar

from .. import wire
from ..config import load_config
from ..errors import LocalError, RemoteError
from ..identity import Identity
from ..net.p2p import P2PTransport
from ..tasks import MOVE_PROTOCOL

__all__ = ["node_address", "send_order"]

A = TypeVar("A")
_WILDCARDS = {"/ip4/0.0.0.0/": "/ip4/127.0.0.1/", "/ip6/::/": "/ip6/::1/"}


def node_address(home: Path, node_key: Identity, addr: str | None) -> str:
    """``addr``, or where the node of ``home`` listens on this machine: the first TCP address of its
    ``[net] listen`` (a wildcard host becomes loopback) with its peer id."""
    if addr:
        return addr
    for listen in load_config(home).net.listen:
        for wildcard, loopback in _WILDCARDS.items():
            if listen.startswith(wildcard):
                listen = loopback + listen[len(wildcard):]
        parts = listen.strip("/").split("/")
        if len(parts) == 4 and parts[2] == "tcp" and parts[3] not in ("", "0"):
            return f"{listen.rstrip('/')}/p2p/{node_key.peer_id}"
    raise LocalError(f"cannot tell where the node of {home} listens ([net] listen has no fixed TCP port): "
                     "pass --node ADDR (edgenode run prints its addresses)")


async def send_order(addr: str, sealed: bytes, answer: type[A], timeout: float) -> A:
    """Send ``sealed`` to the node at ``addr``; its answer, which must be an ``answer`` signed by that node."""
    transport = P2PTransport(Identity.generate(), listen=["/ip4/127.0.0.1/tcp/0"])
    await transport.start()
    try:
        peer = await transport.connect(addr, timeout=10.0)
        raw = await transport.request(peer, MOVE_PROTOCOL, sealed, timeout=timeout + 10.0)
    finally:
        with contextlib.suppress(RuntimeError):
            await transport.stop()
    env, done = wire.open_as(answer, raw)
    if env.author_id != peer:
        raise RemoteError("the answer is not signed by the node")
    return done
