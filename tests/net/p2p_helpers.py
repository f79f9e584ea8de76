"""What the real-libp2p tests share: loopback addresses, the wait bound, start/stop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from edgenode.net.p2p import P2PTransport

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
WAIT = 20.0
"""Upper bound of any single wait in these tests (seconds)."""


@asynccontextmanager
async def running(*transports: P2PTransport) -> AsyncIterator[None]:
    """Start ``transports`` in order; stop them all on exit."""
    try:
        for t in transports:
            await t.start()
        yield
    finally:
        for t in transports:
            await t.stop()
