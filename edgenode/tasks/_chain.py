"""The node's own chain: appends result entries with group commit (one transaction per batch)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ledger import Entry, LedgerError, LedgerStore, MemoryLedgerStore, build_entry

from ..errors import LocalError
from ..wire import Signer
from ._ports import Clock

__all__ = ["ChainWriter", "Appended"]


@dataclass(frozen=True)
class Appended:
    entry: Entry
    prev: Entry | None


class ChainWriter:
    """Appends entries to this node's chain in ``store``.

    Concurrent :meth:`append` calls that arrive while a write is in flight are
    batched into the next transaction, so the ledger keeps up with many slots.
    """

    def __init__(self, store: LedgerStore, signer: Signer, clock: Clock) -> None:
        self.store = store
        self.signer = signer
        self.clock = clock
        self._head: Entry | None = None
        self._loaded = False
        self._pending: list[tuple[str, bytes, asyncio.Future[Appended]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def head(self) -> Entry | None:
        if not self._loaded:
            self._head = await self.store.head(self.signer.public_key)
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
            head = await self.head()
            made: list[Appended] = []
            for kind, body, _ in batch:
                ts = self.clock.now_ms() if head is None else max(self.clock.now_ms(), head.timestamp_ms)
                entry = build_entry(self.signer, head, kind, body, ts)
                made.append(Appended(entry, head))
                head = entry
            try:
                if isinstance(self.store, MemoryLedgerStore):
                    # MemoryLedgerStore._write refuses two entries of one author in one batch
                    # (it checks each against the chain before the batch); one at a time there.
                    for m in made:
                        await self.store.append(m.entry)
                else:
                    await self.store.append_many([m.entry for m in made])
            except LedgerError as exc:
                self._loaded = False  # re-read the stored head before building on it again
                err = LocalError(f"ledger write failed: {exc}")
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            self._head = head
            for m, (_, _, fut) in zip(made, batch, strict=True):
                if not fut.done():
                    fut.set_result(m)
