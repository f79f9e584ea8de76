"""The blobs a node serves on :data:`~edgenode.net.BLOB_PROTOCOL`, and which of them it announces.

Three kinds, looked up in this order:

* blobs put for a moment (a snapshot on its way to another executor): ``put``/``discard``, as
  :class:`~edgenode.net.MemoryBlobStore`; never announced (one peer fetches each, then it goes);
* blobs kept (task modules the node fetched and compiled): :meth:`ServedBlobs.keep`, in memory,
  least recently used out first past a byte budget (``[net] keep_blobs_mb``); announced;
* models of the node's registry, when it shares them (``[net] share_models``): read from
  disk off the event loop; announced.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Protocol, runtime_checkable

from .errors import EdgenodeError
from .net import Handler, MemoryBlobStore, blob_handler, sha256_hex

__all__ = ["ModelFiles", "ServedBlobs", "served_blob_handler"]

_HEX64 = re.compile(r"[0-9a-f]{64}")


@runtime_checkable
class ModelFiles(Protocol):
    """Stored models by sha256 (:class:`edgenode.inference.ModelRegistry` is one)."""

    def hashes(self) -> list[str]: ...

    def path(self, model_hash: str) -> Path: ...


class ServedBlobs(MemoryBlobStore):
    """A node's served blobs (see the module doc).  ``keep_bytes``: the budget of kept blobs (0: none
    kept); ``models``: the registry whose models are served too (None: they are not)."""

    def __init__(self, keep_bytes: int = 0, models: ModelFiles | None = None) -> None:
        super().__init__()
        if keep_bytes < 0:
            raise ValueError("keep_bytes must be >= 0")
        self.keep_bytes = keep_bytes
        self.models = models
        self._kept: dict[str, bytes] = {}
        """Kept blobs, least recently used first."""
        self._kept_total = 0

    def keep(self, data: bytes) -> str | None:
        """Keep ``data`` to serve it; its digest, or None when it is over the whole budget."""
        if len(data) > self.keep_bytes:
            return None
        digest = sha256_hex(data)
        old = self._kept.pop(digest, None)
        if old is not None:
            self._kept_total -= len(old)
        self._kept[digest] = bytes(data)
        self._kept_total += len(data)
        while self._kept_total > self.keep_bytes:
            gone = self._kept.pop(next(iter(self._kept)))
            self._kept_total -= len(gone)
        return digest

    @property
    def kept_bytes(self) -> int:
        return self._kept_total

    def get(self, digest: str) -> bytes | None:
        """A blob put or kept here (a kept one becomes the most recently used); models: :meth:`read`."""
        blob = super().get(digest)
        if blob is None:
            blob = self._kept.pop(digest, None)
            if blob is not None:
                self._kept[digest] = blob
        return blob

    def read_model(self, digest: str) -> bytes | None:
        """A shared model's bytes, checked against its name (blocking: disk)."""
        if self.models is None or _HEX64.fullmatch(digest) is None:  # only a hash becomes a path
            return None
        try:
            data = self.models.path(digest).read_bytes()
        except (OSError, EdgenodeError):  # not here, or evicted meanwhile
            return None
        return data if sha256_hex(data) == digest else None

    def announced(self) -> list[str]:
        """What the node announces it serves, most recent first: kept blobs, then shared models."""
        held = list(reversed(self._kept))
        if self.models is not None:
            held += [h for h in self.models.hashes() if h not in self._kept]
        return held


def served_blob_handler(store: ServedBlobs) -> Handler:
    """The :data:`~edgenode.net.BLOB_PROTOCOL` handler of a node: blobs in memory at once, shared
    models read in a worker thread (the event loop never waits on the disk)."""

    in_memory = blob_handler(store)

    async def handler(sender: str, req: bytes) -> bytes:
        try:
            return await in_memory(sender, req)
        except KeyError:
            if store.models is None:
                raise
        digest = req.decode("ascii", "replace")
        blob = await asyncio.to_thread(store.read_model, digest)
        if blob is None:
            raise KeyError(f"no blob {digest}")
        return blob

    return handler
