"""The dashboard served from inside a node (``edgenode run --dashboard-port N``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ._feed import Feed
from ._server import DashboardServer
from ._source import SwarmSource

if TYPE_CHECKING:
    from ..runtime import Runtime

__all__ = ["NodeDashboard"]


class NodeDashboard:
    """A node's own dashboard: a :class:`SwarmSource` reading the node, served on the node's loop."""

    def __init__(self, feed: Feed, source: SwarmSource, server: DashboardServer) -> None:
        self.feed = feed
        self.source = source
        self.server = server

    @property
    def url(self) -> str:
        return self.server.url

    @classmethod
    async def start(cls, runtime: Runtime, host: str = "127.0.0.1", port: int = 8080,
                    token: str | None = None) -> NodeDashboard:
        """Start reading ``runtime``'s node and serve the page (stopped again if the port fails)."""
        node = runtime.node
        swarm = f" (swarm {node.guard.swarm_id[:12]})" if node.guard is not None else ""
        feed = Feed(f"edgenode node {runtime.peer_id[-8:]}{swarm}", t0_ms=int(time.time() * 1000))
        source = SwarmSource(feed, runtime.transport, runtime.identity, node=node)
        await source.start()
        server = DashboardServer(feed, host=host, port=port, token=token)
        try:
            await server.start()
        except BaseException:
            await source.stop()
            raise
        return cls(feed, source, server)

    async def stop(self) -> None:
        await self.server.stop()
        await self.source.stop()
