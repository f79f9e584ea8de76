"""The node's own chain: appends result entries with group commit (one transaction per batch)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ledger import Entry, Ledger, LedgerError, LedgerStore

from ..errors import LocalError
from ..wire import Signer
from ._ports import Clock

__all__ = ["ChainWriter", "Appended"]

log = logging.getLogger("edgenode.ledger")


@dataclass(frozen=True)
class Appended:
    entry: Entry
    prev: Entry | None


_Pending = tuple[str, bytes, "asyncio.Future[Appended]"]


class ChainWriter:
    """Appends entries to this node's chain in ``store``, through a :class:`ledger.Ledger`.

    Concurrent :meth:`append` calls that arrive while a write is in flight are
    batched into the next transaction, so the ledger keeps up with many slots.
    """

    def __init__(self, store: LedgerStore, signer: Signer, clock: Clock) -> None:
        self.store = store
        self.signer = signer
        self.clock = clock
        self._ledger = Ledger(store, signer)
        self._head: Entry | None = None
        self._loaded = False
        self._pending: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    async def head(self) -> Entry | None:
        if not self._loaded:
            self._head = await self._ledger.head()
            self._loaded = True
        return self._head

    @property
    def height(self) -> int:
        return 0 if self._head is None else self._head.seq

    @property
    def closed(self) -> bool:
        """True after :meth:`close`: appends are refused."""
        return self._closed

    async def append(self, kind: str, body: bytes) -> Appended:
        """Sign and store one entry; returns once it is durable.

        Raises :class:`LocalError` when the writer is closed or the store fails the write
        (every waiting append is answered, never left pending).
        """
        if self._closed:
            raise LocalError("ledger writer closed (node stopping)")
        fut: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        self._pending.append((kind, body, fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await fut

    async def flush(self) -> None:
        """Wait for every pending append to be durable (or failed)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait({self._writer})

    async def close(self) -> None:
        """Refuse new appends, then wait for those already queued (the store stays open)."""
        self._closed = True
        await self.flush()

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                built, prev = await self._write(batch)
            except asyncio.CancelledError:
                self._fail(batch, LocalError("ledger write cancelled"))
                self._fail(self._pending, LocalError("ledger write cancelled"))
                self._pending = []
                raise
            except LedgerError as exc:
                self._fail(batch, LocalError(f"ledger write failed: {exc}"))
                continue
            except Exception as exc:  # a store bug must still answer every waiter, never leave one pending
                log.error("ledger write failed", exc_info=exc)
                self._fail(batch, LocalError(f"ledger write failed: {type(exc).__name__}: {exc}"))
                continue
            self._head = built[-1]
            for entry, before, (_, _, fut) in zip(built, [prev, *built[:-1]], batch, strict=True):
                if not fut.done():
                    fut.set_result(Appended(entry, before))

    async def _write(self, batch: list[_Pending]) -> tuple[list[Entry], Entry | None]:
        prev = await self.head()
        built = await self._ledger.append_batch((kind, body, self.clock.now_ms()) for kind, body, _ in batch)
        first = built[0]
        if first.seq == 1:
            prev = None
        elif prev is None or prev.hash != first.prev:  # the stored head was not ours: read it
            prev = await self.store.get(self._ledger.author, first.seq - 1)
        return built, prev

    def _fail(self, batch: list[_Pending], err: LocalError) -> None:
        self._loaded = False  # re-read the stored head before building on it again
        for _, _, fut in batch:
            if not fut.done():
                fut.set_exception(err)
