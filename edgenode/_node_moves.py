"""The node's part in moving tasks, and its operator's orders.

:class:`NodeMoves` is a mixin of :class:`~edgenode.node.Node` (one concern per module): it hands a
checkpointed task to another executor (:meth:`~NodeMoves.migrate_task`, the executor's ``migrate``
port), ships periodic snapshots to a task's submitter (:meth:`~NodeMoves.ship_snapshot`), drains
the node (:meth:`~NodeMoves.request_drain`: ``edgenode drain``, a ``[node] drain_when`` condition)
and answers its operator's orders on :data:`~edgenode.tasks.MOVE_PROTOCOL`, valid only sealed
with the node's own key: move a running task (``edgenode migrate``), drain (``edgenode drain``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from . import wire
from .errors import EdgenodeError, RemoteError
from .identity import Identity
from .net import MemoryBlobStore, NetError, Transport
from .protocol import Advert, NoExecutor, Receipt
from .reasons import Reason
from .sandbox import Snapshot
from .scheduler import AdvertTable, PlacementRequest, RttTable, place
from .tasks import (
    MIGRATE_PROTOCOL,
    ORDER_SKEW_MS,
    SNAPSHOT_PROTOCOL,
    Clock,
    DrainDone,
    DrainOrder,
    Executor,
    MoveDone,
    MoveOrder,
    SnapshotNote,
    ask_status,
)

__all__ = ["NodeMoves"]

log = logging.getLogger("edgenode.node")

_ANSWER_S = 1.0
"""After answering a drain order, how long the node waits before it starts to stop (the answer goes out)."""


class NodeMoves:
    """Mixin: the moving-task half of the node (its state is set up by ``Node.__init__``)."""

    identity: Identity
    transport: Transport
    clock: Clock
    executor: Executor
    adverts: AdvertTable
    blobs: MemoryBlobStore
    stop_requested: asyncio.Event
    _draining: bool
    _phase: str

    @property
    def peer_id(self) -> str:
        raise NotImplementedError

    def stop_admitting(self) -> None:
        raise NotImplementedError

    async def migrate_task(
        self, snap: Snapshot, to: Sequence[str] = (), requires: Sequence[str] = ()
    ) -> tuple[str, bytes]:
        """Hand a checkpointed task to another executor: ``to`` in order, else the best three by placement
        among those advertising ``requires`` too (e.g. ``arch:aarch64``).

        The snapshot is served as a blob (named by its sha256) while the chosen executor fetches it.
        Returns (that executor's peer id, its sealed receipt); ``NoExecutor`` when no one took it.
        """
        now = self.clock.now_ms()
        peers = list(to)
        left_ms = max(1, snap.state.limits[1] - snap.state.elapsed_ms)
        if not peers:
            req = PlacementRequest(("wasm", *requires), float(left_ms))
            live = [a for a in self.adverts.live(now) if a.peer_id != self.peer_id]
            peers = [c.peer for c in place(req, live, RttTable())][:3]
            if not peers:  # no candidate known (yet): ask the connected peers for their adverts
                peers = [c.peer for c in place(req, await self._ask_adverts(), RttTable())][:3]
        why: list[str] = []
        digest = self.blobs.put(snap.data)
        try:
            for peer in peers:
                try:
                    await self._dial(peer)
                    resp = await self.transport.request(peer, MIGRATE_PROTOCOL, digest.encode("ascii"),
                                                        timeout=left_ms / 1000.0 + 30.0)
                    env = wire.open_envelope(resp)
                except EdgenodeError as exc:
                    why.append(f"{peer[:16]}: {exc}")
                    continue
                if env.author_id == peer and isinstance(env.message, Receipt):
                    return peer, resp
                why.append(f"{peer[:16]}: answered {wire.kind_of(env.message)}")
        finally:
            self.blobs.discard(digest)
        raise NoExecutor("no executor took the task: " + ("; ".join(why) or "no candidate"))

    def request_drain(self, why: str, after_s: float = 0.0) -> list[str]:
        """Drain the node (``edgenode drain``, a ``[node] drain_when`` condition): stop admitting; ask the
        running tasks with safe points to stop at their next safe point and move to other executors;
        then, ``after_s`` later (time for an answer to go out), set :attr:`stop_requested`, on which the
        node's owner stops it (``edgenode run`` exits 0), waiting for the moved tasks' answers and the
        other running tasks as on SIGTERM.  Once; returns the ids of the tasks asked to move."""
        if self._draining or self._phase != "running":
            return []
        self._draining = True
        self.stop_admitting()
        moving = self.executor.checkpoint_all()
        log.warning("draining", extra={"why": why, "moving": len(moving)})
        asyncio.get_running_loop().call_later(after_s, self.stop_requested.set)
        return moving

    async def _handle_order(self, sender: str, data: bytes) -> bytes:
        """The :data:`MOVE_PROTOCOL` handler: orders from this node's operator, sealed with its own key
        within :data:`ORDER_SKEW_MS` of its clock: move a running task, or drain."""
        try:
            env = wire.open_envelope(data)
        except EdgenodeError as exc:
            return wire.seal(self.identity, MoveDone("", False, "", f"malformed order: {exc}"))
        order = env.message
        if not isinstance(order, MoveOrder | DrainOrder):
            return wire.seal(self.identity, MoveDone("", False, "", f"not an order: {wire.kind_of(order)}"))
        if env.author != self.identity.public_key or abs(order.issued_ms - self.clock.now_ms()) > ORDER_SKEW_MS:
            why = "not signed by this node's key now"
            if isinstance(order, DrainOrder):
                return wire.seal(self.identity, DrainDone(False, (), Reason.FORBIDDEN, why))
            return wire.seal(self.identity, MoveDone(order.task_id, False, "", why))
        if isinstance(order, DrainOrder):
            if self._draining or self._phase != "running":
                return wire.seal(self.identity, DrainDone(False, (), Reason.STOPPING, "draining or stopping already"))
            moving = self.request_drain(f"edgenode drain from {sender[:16]}", after_s=_ANSWER_S)
            detail = "draining: the node stops once the moved tasks have answered"
            return wire.seal(self.identity, DrainDone(True, tuple(moving), "", detail))
        done = self.executor.move(order.task_id, order.to, order.requires)
        if done is None:
            detail = "no running task with safe points has this id here"
            return wire.seal(self.identity, MoveDone(order.task_id, False, "", detail))
        try:
            peer = await asyncio.wait_for(done, timeout=600.0)
        except (EdgenodeError, TimeoutError) as exc:
            return wire.seal(self.identity, MoveDone(order.task_id, False, "", f"not moved: {exc}"))
        return wire.seal(self.identity, MoveDone(order.task_id, True, peer, "moved"))

    async def ship_snapshot(self, peer: str, task_id: str, snap: Snapshot) -> None:
        """Send a periodic snapshot of a task to ``peer`` (its submitter): a note, then ``peer`` fetches it."""
        digest = self.blobs.put(snap.data)
        try:
            note = wire.seal(self.identity, SnapshotNote(task_id, digest))
            answer = await self.transport.request(peer, SNAPSHOT_PROTOCOL, note, timeout=60.0)
        finally:
            self.blobs.discard(digest)
        if answer != b"ok":
            raise RemoteError(f"the submitter did not keep the snapshot: {answer[:40]!r}")

    async def _ask_adverts(self) -> list[Advert]:
        """The connected peers' own adverts, asked now (a STATUS request each, a few seconds at most)."""
        targets = [p for p in self.transport.peers() if p != self.peer_id]
        return [st.reply.advert for st in await ask_status(self.transport, self.identity, targets, 3.0)]

    async def _dial(self, peer: str) -> None:
        """Connect to ``peer`` through its advertised addresses unless connected."""
        if peer in self.transport.peers():
            return
        advert = self.adverts.get(peer)
        errors: list[str] = []
        for addr in advert.addrs if advert is not None else ():
            try:
                await self.transport.connect(addr, timeout=10.0)
                return
            except NetError as exc:
                errors.append(str(exc))
        raise NetError(f"cannot dial {peer}: {'; '.join(errors) or 'no address'}")
