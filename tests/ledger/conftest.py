"""Fixtures for the ledger tests: signers, stores (memory and SQLite), chain builders."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import nacl.signing
import pytest

import ledger
from ledger import Entry, LedgerStore, MemoryLedgerStore, SqliteLedgerStore


class KeySigner:
    """A bare pynacl signer: what the ledger needs, without edgenode."""

    def __init__(self, seed: bytes | None = None) -> None:
        self._key = nacl.signing.SigningKey(seed) if seed else nacl.signing.SigningKey.generate()
        self.public_key = bytes(self._key.verify_key)

    def sign(self, data: bytes) -> bytes:
        return bytes(self._key.sign(data).signature)


def make_chain(signer: KeySigner, n: int, *, t0: int = 1_000, kind: str = "task_result") -> list[Entry]:
    out: list[Entry] = []
    prev: Entry | None = None
    for i in range(n):
        prev = ledger.build_entry(signer, prev, kind, f"body {i}".encode(), t0 + i)
        out.append(prev)
    return out


@pytest.fixture
def signer() -> KeySigner:
    return KeySigner()


@pytest.fixture
def new_signer() -> Callable[[], KeySigner]:
    return KeySigner


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LedgerStore]:
    s: LedgerStore
    if request.param == "memory":
        s = MemoryLedgerStore()
    else:
        s = await SqliteLedgerStore.open(tmp_path / "ledger.db")
    try:
        yield s
    finally:
        await s.close()
