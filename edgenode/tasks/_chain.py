"""The node's own chain: appends result entries with group commit (one transaction per batch)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ledger import Entry, Ledger, LedgerError, LedgerStore

from ..errors import LocalError
from ..wire import Signer
from ._ports import Clock

__all__ = ["ChainWriter", "Appended"]


@dataclass(frozen=True)
class Appended:
    entry: Entry
    prev: Entry | None


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
        self._pending: list[tuple[str, bytes, asyncio.Future[Appended]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def head(self) -> Entry | None:
        if not self._loaded:
            self._head = await self._ledger.head()
            self._loaded = True
        return self._head

    @property
    def height(self) -> int:
        return 0 if self._head is None else self._head.seq

    async def append(self, kind: str, body: bytes) -> Appended:
        fut: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        self._pending.append((kind, body, fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await fut

    async def flush(self) -> None:
        """Wait for every pending append to be durable."""
        while self._writer is not None and not self._writer.done():
            await self._writer

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                prev = await self.head()
                built = await self._ledger.append_batch((kind, body, self.clock.now_ms()) for kind, body, _ in batch)
                first = built[0]
                if first.seq == 1:
                    prev = None
                elif prev is None or prev.hash != first.prev:  # the stored head was not ours: read it
                    prev = await self.store.get(self._ledger.author, first.seq - 1)
            except LedgerError as exc:
                self._loaded = False  # re-read the stored head before building on it again
                err = LocalError(f"ledger write failed: {exc}")
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            self._head = built[-1]
            for entry, before, (_, _, fut) in zip(built, [prev, *built[:-1]], batch, strict=True):
                if not fut.done():
                    fut.set_result(Appended(entry, before))
