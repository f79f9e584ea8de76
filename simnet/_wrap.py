"""Transport wrappers at the edge of real nodes: delegation, recording, quiet executors."""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator

from edgenode import wire
from edgenode.errors import EdgenodeError
from edgenode.net import GossipMessage, Handler, PeerEvent, Subscription, Transport, Validator
from edgenode.protocol import TASK_PROTOCOL, Receipt, TaskSpec
from edgenode.tasks import MIGRATE_PROTOCOL

__all__ = ["DelegatingTransport", "RecordingTransport", "QuietTransport", "CURRENT_TASK"]

CURRENT_TASK: contextvars.ContextVar[str] = contextvars.ContextVar("simnet_task", default="")
"""The simulator's id of the task being submitted in this asyncio context."""


class DelegatingTransport(Transport):
    """Passes every call to ``inner``; subclasses override what they change."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    @property
    def peer_id(self) -> str:
        return self.inner.peer_id

    @property
    def listen_addrs(self) -> list[str]:
        return self.inner.listen_addrs

    async def connect(self, addr: str, timeout: float = 10.0) -> str:
        return await self.inner.connect(addr, timeout)

    def peers(self) -> list[str]:
        return self.inner.peers()

    def peer_events(self) -> AsyncIterator[PeerEvent]:
        return self.inner.peer_events()

    async def publish(self, topic: str, data: bytes) -> None:
        await self.inner.publish(topic, data)

    def subscribe(self, topic: str) -> Subscription:
        return self.inner.subscribe(topic)

    def set_validator(self, topic: str, validator: Validator) -> None:
        self.inner.set_validator(topic, validator)

    async def request(self, peer: str, protocol: str, data: bytes, timeout: float = 10.0) -> bytes:
        return await self.inner.request(peer, protocol, data, timeout)

    def serve(self, protocol: str, handler: Handler) -> None:
        self.inner.serve(protocol, handler)

    @property
    def counters(self) -> dict[str, int]:
        return self.inner.counters


class RecordingTransport(DelegatingTransport):
    """A submitter's transport that notes which node task id belongs to which simulated task,
    and whether some executor accepted it (answered with a receipt, valid or not)."""

    def __init__(self, inner: Transport) -> None:
        super().__init__(inner)
        self.sim_of: dict[str, str] = {}
        """node task id -> simulator task id."""
        self.accepted: set[str] = set()
        """Simulator task ids some executor answered with a receipt."""
        self.receipts_from: dict[str, list[str]] = {}
        """Simulator task id -> executors that sent a receipt."""

    async def request(self, peer: str, protocol: str, data: bytes, timeout: float = 10.0) -> bytes:
        sim = CURRENT_TASK.get()
        if protocol == TASK_PROTOCOL and sim:
            try:
                _env, spec = wire.open_as(TaskSpec, data)
                self.sim_of[spec.task_id] = sim
            except EdgenodeError:
                pass
        resp = await self.inner.request(peer, protocol, data, timeout)
        if protocol in (TASK_PROTOCOL, MIGRATE_PROTOCOL) and sim:  # a task, or its resume from a snapshot
            try:
                msg = wire.open_envelope(resp).message
            except EdgenodeError:
                msg = None
            if isinstance(msg, Receipt):
                self.accepted.add(sim)
                self.receipts_from.setdefault(sim, []).append(peer)
        return resp


class _Never:
    """An async iterator that never yields (until closed)."""

    def __init__(self) -> None:
        import asyncio

        self._closed = asyncio.Event()

    def __aiter__(self) -> _Never:
        return self

    async def __anext__(self) -> GossipMessage:
        await self._closed.wait()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._closed.set()


class QuietTransport(DelegatingTransport):
    """An executor that publishes on ``topics`` but does not follow them (large swarms)."""

    def __init__(self, inner: Transport, topics: frozenset[str]) -> None:
        super().__init__(inner)
        self.topics = topics

    def subscribe(self, topic: str) -> Subscription:
        if topic in self.topics:
            return _Never()
        return self.inner.subscribe(topic)
