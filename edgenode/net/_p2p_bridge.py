"""A trio event loop in its own thread, bridged to the caller's asyncio loop.

py-libp2p is trio-only; the node is asyncio.  :class:`TrioThread` runs one
``trio.run`` in a dedicated thread and offers, in both directions:

* asyncio -> trio: ``await bridge.call(async_fn, *args)`` runs ``async_fn`` as a
  trio task and returns its result (or raises its exception) in asyncio;
  cancelling the asyncio waiter cancels the trio task.
* trio -> asyncio: ``bridge.post(fn, *args)`` schedules a plain callback on the
  asyncio loop (never blocks), and ``await bridge.call_asyncio(coro_fn, *args)``
  (from a trio task) runs a coroutine on the asyncio loop and waits for it.

Nothing here knows libp2p; it is tested on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import trio

from ._errors import NotRunning

__all__ = ["TrioThread", "SharedTrioThread", "Child"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

Body = Callable[..., Awaitable[None]]
"""The long-lived trio task: ``await body(task_status)``; it calls ``task_status.started()`` when ready."""


def _resolve(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def _unwrap(exc: Exception) -> Exception:
    """The one real error inside nested single-exception groups (trio nurseries wrap errors)."""
    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class Child:
    """A body started in a running :class:`TrioThread` with :meth:`TrioThread.start_child`."""

    def __init__(self) -> None:
        self.scope: trio.CancelScope | None = None
        self.done = trio.Event()
        self.error: BaseException | None = None
        """The exception that ended the body after it had started, if any."""


class TrioThread:
    """Owns one trio loop running ``body`` in a background thread.

    Further bodies may share the loop (:meth:`start_child` / :meth:`stop_child`): each runs
    in its own cancel scope, and one that fails after starting ends alone.
    """

    def __init__(self, name: str = "edgenode-trio") -> None:
        self._name = name
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._done = threading.Event()
        # Crossings between the threads are coalesced: callbacks queue up here and one
        # wake-up (a self-pipe write) runs every callback queued until it is served.
        self._to_asyncio: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._to_trio: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._wake_lock = threading.Lock()
        self._asyncio_woken = False
        self._trio_woken = False
        self.error: BaseException | None = None
        """The exception that ended the trio loop, if any (read after :meth:`stop`)."""

    @property
    def running(self) -> bool:
        return self._nursery is not None and not self._done.is_set()

    # -- lifecycle (asyncio side) ----------------------------------------------
    async def start(self, body: Body, timeout: float) -> None:
        """Start the thread and wait until ``body`` has called ``task_status.started()``.

        Raises whatever ``body`` raised before being ready, or NotRunning on timeout.
        """
        if self._thread is not None:
            raise NotRunning("a TrioThread starts once")
        loop = asyncio.get_running_loop()
        self._loop = loop
        ready: asyncio.Future[None] = loop.create_future()

        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    await nursery.start(body)
                except Exception as exc:  # a failed start is the starter's exception
                    self.post(_resolve, ready, None, _unwrap(exc))
                    return
                self.post(_resolve, ready, None, None)

        def run() -> None:
            try:
                trio.run(main)
            except BaseException as exc:  # the thread's top: record, never propagate into threading
                self.error = exc
                logger.warning("network thread %s ended with %r", self._name, exc)
            finally:
                self._done.set()
                self.post(_resolve, ready, None, NotRunning("the network thread ended"))

        self._thread = threading.Thread(target=run, name=self._name, daemon=True)
        self._thread.start()
        try:
            await asyncio.wait_for(ready, timeout)
        except TimeoutError as exc:
            await self.stop(timeout)
            raise NotRunning(f"the network thread did not start within {timeout} s") from exc
        except BaseException:
            await self.stop(timeout)
            raise

    async def stop(self, timeout: float) -> None:
        """Cancel everything in the trio loop and join the thread (bounded by ``timeout``)."""
        thread = self._thread
        if thread is None:
            return
        token, nursery = self._token, self._nursery
        if token is not None and nursery is not None:
            with contextlib.suppress(trio.RunFinishedError):  # already finished: nothing to cancel
                token.run_sync_soon(nursery.cancel_scope.cancel)
        await asyncio.to_thread(thread.join, timeout)
        if thread.is_alive():
            raise NotRunning(f"the network thread did not stop within {timeout} s")
        self._nursery = None

    async def start_child(self, body: Body, timeout: float) -> Child:
        """Run another long-lived ``body`` in this (running) loop; return once it called ``started()``.

        Raises what ``body`` raised before it was ready, or NotRunning on timeout.
        """
        child = Child()

        async def runner(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            started = False
            try:
                with trio.CancelScope() as scope:
                    child.scope = scope
                    async with trio.open_nursery() as nursery:
                        await nursery.start(body)
                        started = True
                        task_status.started()
            except Exception as exc:  # after start: this body ends alone, the loop and its siblings go on
                if not started:
                    raise
                child.error = exc
                logger.warning("a body in the network thread %s ended with %r", self._name, exc)
            finally:
                child.done.set()

        async def starter() -> None:
            assert self._nursery is not None
            await self._nursery.start(runner)

        try:
            await asyncio.wait_for(self.call(starter), timeout)
        except TimeoutError as exc:
            with contextlib.suppress(NotRunning):
                await self.stop_child(child, timeout)
            raise NotRunning(f"a body did not start within {timeout} s") from exc
        return child

    async def stop_child(self, child: Child, timeout: float) -> None:
        """Cancel ``child`` and wait (at most ``timeout``) until it has ended."""

        async def stop() -> None:
            if child.scope is not None:
                child.scope.cancel()
            with trio.move_on_after(timeout):
                await child.done.wait()

        await self.call(stop)

    # -- asyncio -> trio -----------------------------------------------------------
    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` in the trio loop; result or exception comes back here."""
        token, nursery, loop = self._token, self._nursery, asyncio.get_running_loop()
        if token is None or nursery is None or self._done.is_set():
            raise NotRunning("the transport is not running")
        fut: asyncio.Future[T] = loop.create_future()
        scopes: list[trio.CancelScope] = []
        cancelled: list[bool] = []  # set (appended to) from the asyncio side; read in the trio thread

        async def runner() -> None:
            settled = False
            try:
                with trio.CancelScope() as scope:
                    scopes.append(scope)
                    if cancelled:
                        scope.cancel()
                    try:
                        result = await fn(*args)
                    except Exception as exc:  # carried to the asyncio caller
                        self.post(_resolve, fut, None, exc)
                    else:
                        self.post(_resolve, fut, result, None)
                    settled = True
            finally:
                if not settled:
                    self.post(_resolve, fut, None, NotRunning("the transport stopped"))

        def cancel() -> None:
            cancelled.append(True)
            for scope in scopes:
                scope.cancel()

        try:
            self._in_trio(nursery.start_soon, runner)
        except trio.RunFinishedError as exc:
            raise NotRunning("the transport is not running") from exc
        try:
            return await fut
        except asyncio.CancelledError:
            with contextlib.suppress(trio.RunFinishedError):  # the loop is gone, and the task with it
                self._in_trio(cancel)
            raise

    def spawn(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Start ``fn(*args)`` as a trio task without waiting for it (it must not raise)."""
        token, nursery = self._token, self._nursery
        if token is None or nursery is None:
            raise NotRunning("the transport is not running")
        try:
            self._in_trio(nursery.start_soon, fn, *args)
        except trio.RunFinishedError as exc:
            raise NotRunning("the transport is not running") from exc

    def _in_trio(self, fn: Callable[..., object], *args: Any) -> None:
        """Run the plain callable ``fn(*args)`` in the trio thread soon (any thread; coalesced wake-ups)."""
        token = self._token
        if token is None:
            raise trio.RunFinishedError("the trio loop never started")
        self._to_trio.append((fn, args))
        with self._wake_lock:
            if self._trio_woken:
                return
            self._trio_woken = True
        try:
            token.run_sync_soon(self._serve_trio)
        except trio.RunFinishedError:
            with self._wake_lock:
                self._trio_woken = False
            raise

    def _serve_trio(self) -> None:
        with self._wake_lock:
            self._trio_woken = False
        queue = self._to_trio
        while queue:
            fn, args = queue.popleft()
            try:
                fn(*args)
            except Exception as exc:  # one failing callback must not strand the ones queued behind it
                logger.warning("callback %r in the trio thread failed: %r", fn, exc)

    # -- trio -> asyncio -----------------------------------------------------------
    def post(self, fn: Callable[..., object], *args: Any) -> None:
        """Schedule ``fn(*args)`` on the asyncio loop (thread-safe, never blocks).

        Dropped silently once the asyncio loop is closed: nobody is left to tell.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        self._to_asyncio.append((fn, args))
        with self._wake_lock:
            if self._asyncio_woken:
                return
            self._asyncio_woken = True
        try:
            loop.call_soon_threadsafe(self._serve_asyncio)
        except RuntimeError:
            logger.debug("asyncio loop closed; dropping a callback from the network thread")

    def _serve_asyncio(self) -> None:
        with self._wake_lock:
            self._asyncio_woken = False
        queue = self._to_asyncio
        while queue:
            fn, args = queue.popleft()
            try:
                fn(*args)
            except Exception as exc:  # one failing callback must not strand the ones queued behind it
                logger.warning("callback %r in the asyncio thread failed: %r", fn, exc)

    async def call_asyncio(self, coro_fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """From a trio task: run ``coro_fn(*args)`` on the asyncio loop and wait for its result."""
        loop = self._loop
        if loop is None or loop.is_closed():
            raise NotRunning("the asyncio loop is gone")
        done = trio.Event()
        tasks: list[asyncio.Task[T]] = []
        abandoned = False

        def wake(_: asyncio.Task[T]) -> None:
            with contextlib.suppress(trio.RunFinishedError):  # the trio loop ended; nobody waits any more
                self._in_trio(done.set)

        def begin() -> None:  # on the asyncio loop
            if abandoned:
                return
            task = loop.create_task(coro_fn(*args))
            task.add_done_callback(wake)
            tasks.append(task)

        def abandon() -> None:  # on the asyncio loop
            for task in tasks:
                task.cancel()

        self.post(begin)
        try:
            await done.wait()
        finally:
            if not done.is_set():
                abandoned = True
                self.post(abandon)
        task = tasks[0]
        if task.cancelled():
            raise NotRunning("the asyncio side cancelled the call")
        return task.result()


async def _idle(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    await trio.sleep_forever()


class SharedTrioThread:
    """One trio thread per asyncio loop, lent to every libp2p host of that loop.

    A process that runs many hosts (a simulator worker, a test) would otherwise run a
    thread per host, and the threads would spend their time handing the GIL to each other;
    in one loop they take turns at trio's own (much cheaper) task switches.  The thread
    starts with its first user and stops when the last one leaves.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._thread: TrioThread | None = None
        self._users = 0
        self._lock = asyncio.Lock()

    @classmethod
    def for_running_loop(cls, name: str = "edgenode-p2p") -> SharedTrioThread:
        loop = asyncio.get_running_loop()
        shared = _SHARED.get(loop)
        if shared is None:
            shared = _SHARED[loop] = cls(name)
        return shared

    async def acquire(self, timeout: float) -> TrioThread:
        """The running thread (started for the first user)."""
        async with self._lock:
            if self._thread is None or not self._thread.running:
                thread = TrioThread(self._name)
                await thread.start(_idle, timeout)
                self._thread = thread
            self._users += 1
            return self._thread

    async def release(self, timeout: float) -> None:
        """One user leaves; the last one stops the thread."""
        async with self._lock:
            self._users -= 1
            if self._users <= 0 and self._thread is not None:
                self._users = 0
                thread, self._thread = self._thread, None
                await thread.stop(timeout)


_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SharedTrioThread] = weakref.WeakKeyDictionary()
