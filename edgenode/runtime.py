"""The node runtime: one assembly of a node, owned by one task group, with one start and one stop.

:func:`build_runtime` is the only place a node is put together: ``edgenode run``, both simnet
backends and the test fixtures call it, so the simulator runs exactly what a device runs.
The :class:`Runtime` it returns owns

* the :class:`~edgenode.node.Node` (executor, admission, adverts, ledger replication),
* its :class:`~edgenode.tasks.ChainWriter` (the node's own chain) and the ledger store,
* the :class:`~edgenode.security.SwarmGuard` in swarm mode,
* the federated-learning controller (``FLController``) unless built with ``fl=False``,

and one :class:`asyncio.TaskGroup` in which every background task of the node runs (topic
followers, periodic adverts and head announcements, ledger syncs).  A background task that
fails with an unexpected error ends the group: the runtime records it (:attr:`Runtime.failure`)
and :meth:`Runtime.wait` returns, instead of a loop silently dying.

Start order: transport, ledger head, protocol handlers, guard, topic followers, bootstrap dials,
periodic loops, then the FL controller.  Stop order (:meth:`Runtime.stop`): stop admitting (new
tasks are answered busy), stop the FL controller, answer queued tasks ``Busy(stopping)``,
let running tasks finish within ``NodeTiming.drain_s`` and hand back (busy) the rest, flush and
close the ledger writer, announce the final head, end the background tasks, the guard and the
transport, then close the replay store and the ledger store.  Every waiting future resolves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger import LedgerStore

from ._blobs import ModelFiles
from .config import NodeConfig
from .errors import LocalError
from .identity import Identity
from .metrics import NodeMetrics
from .net import Transport
from .node import Node, NodeTiming
from .security import SwarmGuard, load_guard
from .tasks import AdmissionHook, ChainWriter, Clock, DrainReport, InferEngine, ReplayStore, SystemClock, WasmEngine

if TYPE_CHECKING:
    from .fl import FLController, ModelSink

__all__ = ["Runtime", "StopReport", "TaskGroupOwner", "build_runtime"]

log = logging.getLogger("edgenode.runtime")


@dataclass(frozen=True)
class StopReport:
    """What :meth:`Runtime.stop` did."""

    elapsed_ms: float
    """From the call to the store being closed."""
    drain: DrainReport
    """Tasks finished within the budget, answered busy from the queue, handed back."""


class _Closing(Exception):
    """Raised inside the task group to end it (cancels the tasks still in it)."""


class Runtime:
    """A node and what it owns; built by :func:`build_runtime`.  ``await start()`` ... ``await stop()``."""

    def __init__(self, node: Node, fl: FLController | None, group: TaskGroupOwner) -> None:
        self.node = node
        self.fl = fl
        """The federated-learning controller (None when built with ``fl=False``)."""
        self.group = group
        """The task group every background task of the node runs in."""
        self._stopped: asyncio.Future[StopReport] | None = None

    # -- what it owns ---------------------------------------------------------------
    @property
    def identity(self) -> Identity:
        return self.node.identity

    @property
    def peer_id(self) -> str:
        return self.node.peer_id

    @property
    def transport(self) -> Transport:
        return self.node.transport

    @property
    def store(self) -> LedgerStore:
        return self.node.store

    @property
    def chain(self) -> ChainWriter:
        return self.node.chain

    @property
    def guard(self) -> SwarmGuard | None:
        return self.node.guard

    @property
    def running(self) -> bool:
        return self.node.running

    @property
    def failure(self) -> BaseException | None:
        """The unexpected error that ended the task group early, if any."""
        return self.group.failure

    # -- lifecycle --------------------------------------------------------------------
    async def start(self, bootstrap: Sequence[str] = ()) -> None:
        """Open the task group, start the node (dialling ``bootstrap``), then the FL controller.

        On failure whatever did start is stopped (and the store closed) before the error propagates.
        """
        if self.group.opened:
            raise LocalError("the runtime was started already")
        await self.group.open(f"edgenode runtime {self.peer_id[:16]}")
        try:
            await self.node.start(bootstrap)
            if self.fl is not None:
                await self.fl.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> StopReport:
        """Stop in order (see the module doc); idempotent: a second call returns the first's report."""
        if self._stopped is not None:
            return await asyncio.shield(self._stopped)
        self._stopped = asyncio.get_running_loop().create_future()
        t0 = time.perf_counter()
        try:
            self.node.stop_admitting()
            if self.fl is not None:
                await self.fl.stop()
            drain = await self.node.stop()
            await self.group.close()
            if drain is None:  # the node never started: it still owns its stores
                await self.node.executor.close()
            await self.node.store.close()
            report = StopReport((time.perf_counter() - t0) * 1000.0, drain or DrainReport())
        except BaseException as exc:
            self._stopped.set_exception(exc)
            self._stopped.exception()  # retrieved: a later stop() re-raises it
            raise
        self._stopped.set_result(report)
        return report

    async def wait(self) -> None:
        """Return when the task group has ended (after :meth:`stop`, or early when a task failed), or when
        the node asks to be stopped (it drains: ``edgenode drain``, ``[node] drain_when``); then stop it."""
        waits = {asyncio.ensure_future(self.group.wait()), asyncio.ensure_future(self.node.stop_requested.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()


class TaskGroupOwner:
    """One :class:`asyncio.TaskGroup`, held open by a task of its own between :meth:`open` and
    :meth:`close` (a runtime's start and stop run in different tasks of the caller's)."""

    def __init__(self) -> None:
        self.failure: BaseException | None = None
        """The first unexpected error of a task in the group (the group then ended)."""
        self._tg: asyncio.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    @property
    def opened(self) -> bool:
        return self._task is not None

    async def open(self, name: str) -> None:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._own(ready), name=name)
        await ready

    async def close(self) -> None:
        """Cancel the tasks still in the group and wait for it to end."""
        self._closing.set()
        await self.wait()

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.wait({self._task})

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        """Run ``coro`` in the group; None (and ``coro`` closed) when the group is not open."""
        tg = self._tg
        if tg is None or self._closing.is_set():
            coro.close()
            return None
        try:
            return tg.create_task(coro)
        except RuntimeError:  # the group is shutting down after a failure
            coro.close()
            return None

    async def _own(self, ready: asyncio.Future[None]) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                ready.set_result(None)
                await self._closing.wait()
                raise _Closing
        except* _Closing:
            pass
        except* Exception as group:
            self.failure = group.exceptions[0]
            log.error("a node task failed; the node stops", exc_info=self.failure)
        finally:
            self._tg = None
            if not ready.done():
                ready.set_result(None)


def build_runtime(
    identity: Identity,
    config: NodeConfig,
    transport: Transport,
    store: LedgerStore,
    *,
    sandbox: WasmEngine | None = None,
    registry: InferEngine | None = None,
    models: ModelSink | None = None,
    guard: SwarmGuard | None = None,
    home: Path | None = None,
    replay_store: ReplayStore | None = None,
    clock: Clock | None = None,
    timing: NodeTiming | None = None,
    metrics: NodeMetrics | None = None,
    replicate: bool = True,
    hook: AdmissionHook | None = None,
    fl: bool = True,
) -> Runtime:
    """Assemble a node: the one place where a Node, its guard and its FL controller are put together.

    ``transport`` must be ``identity``'s (not yet started); ``store`` is the ledger store the
    runtime will own (and close).  ``sandbox``/``registry`` are the WASM and inference engines
    (None: this node does not run that kind).  ``models`` is where FL hot-swaps trained models; with
    ``[net] share_models`` its models (a :class:`~edgenode.inference.ModelRegistry`) are served to peers
    and announced, new ones as they come.
    Swarm mode: pass ``guard``, or ``home`` to load it from ``config.swarm`` (certificate and
    revocation files in that directory; open mode when ``[swarm]`` names no swarm).
    ``replay_store`` keeps admitted nonces across restarts (default: memory).  ``fl=False``
    leaves the FL controller out (tests and the simulator when no federated run is wanted).
    """
    clk: Clock = clock or SystemClock()
    shared = models if config.net.share_models and isinstance(models, ModelFiles) else None
    if guard is None and home is not None:
        guard = load_guard(identity, home, config.swarm, clk, tables=config.tables)
    group = TaskGroupOwner()
    node = Node(
        identity, config, transport, store, sandbox, registry, clk,
        hook=hook, timing=timing, metrics=metrics, replicate=replicate, guard=guard, replay_store=replay_store,
        spawn=group.spawn, models=shared,
    )  # fmt: skip
    ctrl: FLController | None = None
    if fl:
        from .fl import node_controller  # the fl package pulls in more than a node without FL needs

        sink = models if shared is None or models is None else _Announced(models, node)
        ctrl = node_controller(node, config.fl, registry=sink, spawn=group.spawn)
    return Runtime(node, ctrl, group)


class _Announced:
    """A model sink whose new models the node announces (``[net] share_models``)."""

    def __init__(self, inner: ModelSink, node: Node) -> None:
        self._inner = inner
        self._node = node

    def add(self, source: bytes) -> str:
        digest = self._inner.add(source)
        self._node.model_added(digest)
        return digest

    def set_alias(self, name: str, ref: str) -> str:
        return self._inner.set_alias(name, ref)
