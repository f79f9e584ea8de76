"""``Ledger``: the local author's own chain, written through a store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import nacl.bindings
import nacl.exceptions

from ._entry import SIGN_DOMAIN, Entry, Signer, build_entry
from ._errors import LedgerLocalError
from ._store import LedgerStore

__all__ = ["Ledger"]


class _FixedKeySigner:
    """The signer with its public key read once (an Identity derives it on every access)."""

    def __init__(self, public_key: bytes, sign: Callable[[bytes], bytes]) -> None:
        self.public_key = public_key
        self.sign = sign


class Ledger:
    """Appends signed entries to ``signer``'s chain in ``store``.

    Entries are signed here and stored with ``own_signatures=True``: the signer is checked once
    (a probe signature must verify under its public key), then its signatures are not verified
    again on every append. Appends are serialised (one asyncio lock), so seq and prev stay right under concurrency.
    Time is the caller's: pass ``timestamp_ms``; if it is earlier than the head's (a clock
    stepped back), the head's timestamp is used instead, so a chain's time never decreases.
    """

    def __init__(self, store: LedgerStore, signer: Signer) -> None:
        self.store = store
        """Where the chain lives (it may hold other authors' chains too)."""
        self.signer = signer
        """The key that signs this chain."""
        self.author = bytes(signer.public_key)
        """This chain's author: the signer's 32-byte public key."""
        if len(self.author) != 32:
            raise LedgerLocalError("the signer's public key must be 32 bytes")
        self._lock = asyncio.Lock()
        self._signer_checked = False
        self._fixed = _FixedKeySigner(self.author, signer.sign)

    def _check_signer(self) -> None:
        """Once per Ledger: the signer's signatures verify under its public key (then they are trusted)."""
        probe = SIGN_DOMAIN + b"signer check" + self.author
        try:
            nacl.bindings.crypto_sign_open(bytes(self.signer.sign(probe)) + probe, self.author)
        except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
            raise LedgerLocalError("the signer's signatures do not verify under its public key") from exc
        self._signer_checked = True

    async def head(self) -> Entry | None:
        """The last entry of this author's chain, or None before the first append."""
        return await self.store.head(self.author)

    async def append(self, kind: str, body: bytes, timestamp_ms: int) -> Entry:
        """Sign and store one entry; it is durable when this returns."""
        return (await self.append_batch([(kind, body, timestamp_ms)]))[0]

    async def append_batch(self, items: Iterable[tuple[str, bytes, int]]) -> list[Entry]:
        """Sign and store several entries in one transaction (kind, body, timestamp_ms each).

        All or nothing; durable when this returns.
        """
        items = list(items)
        async with self._lock:
            if not self._signer_checked:
                self._check_signer()
            prev = await self.store.head(self.author)
            built: list[Entry] = []
            for kind, body, ts in items:
                if prev is not None and ts < prev.timestamp_ms:
                    ts = prev.timestamp_ms
                prev = build_entry(self._fixed, prev, kind, body, ts)
                built.append(prev)
            if built:
                await self.store.append_many(built, own_signatures=True)
            return built
