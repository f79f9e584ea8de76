"""Crash safety: SIGKILL a process appending entries at random moments; every acknowledged entry survives."""

from __future__ import annotations

import asyncio
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger import SqliteLedgerStore, verify_store

_CHILD = r"""
import asyncio, random, sys
import nacl.signing
from ledger import Ledger, SqliteLedgerStore

class Signer:
    def __init__(self, seed):
        self._key = nacl.signing.SigningKey(seed)
        self.public_key = bytes(self._key.verify_key)
    def sign(self, data):
        return bytes(self._key.sign(data).signature)

async def main():
    store = await SqliteLedgerStore.open(sys.argv[1])
    led = Ledger(store, Signer(bytes.fromhex(sys.argv[2])))
    rng = random.Random(int(sys.argv[3]))
    ts = 1_000
    print("ready", flush=True)
    while True:
        batch = []
        for _ in range(rng.choice([1, 1, 1, 3, 20, 100])):
            ts += rng.randint(0, 3)
            batch.append(("task_result", rng.randbytes(rng.randint(0, 300)), ts))
        entries = await led.append_batch(batch)
        sys.stdout.write(f"{entries[-1].seq}\n")  # acknowledged: durable now
        sys.stdout.flush()

asyncio.run(main())
"""


def _read_acks(proc: subprocess.Popen[bytes], want: int, deadline: float) -> list[int]:
    """Read ack lines until ``want`` seqs arrived (or the deadline); return the seqs."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    acks: list[int] = []
    buf = b""
    ready = False
    try:
        while len(acks) < want or not ready:
            left = deadline - time.monotonic()
            assert left > 0, "child made no progress before the deadline"
            if not sel.select(timeout=left):
                continue
            chunk = os.read(fd, 65536)
            assert chunk, f"child exited early: {proc.poll()}"
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line == b"ready":
                    ready = True
                else:
                    acks.append(int(line))
    finally:
        sel.close()
    return acks


async def _check(path: Path, acked: int, label: str) -> None:
    """Every acknowledged seq is stored and the chain verifies (read-only, as the CLI reads a hot WAL)."""
    store = await SqliteLedgerStore.open(path, readonly=acked > 0)
    try:
        lengths = await store.lengths()
        if acked:
            [length] = lengths.values()
            assert length >= acked, f"{label}: acknowledged seq {acked} lost (head {length})"
        report = await verify_store(store)
        assert report.ok, (label, report.failures, report.integrity)
    finally:
        await store.close()


def _crash_rounds(tmp_path: Path, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "ledger.db"
    key_seed = rng.randbytes(32)
    acked = 0
    for r in range(rounds):
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path), key_seed.hex(), str(rng.randrange(1 << 30))],
            stdout=subprocess.PIPE,
        )
        try:
            want = rng.choice([0, 0, 1, 2, 5, 10, 30, 60])
            if want or rng.random() < 0.5:
                acks = _read_acks(proc, want, time.monotonic() + 120)
                acked = max([acked, *acks])
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            assert proc.stdout is not None
            proc.stdout.close()

        asyncio.run(_check(path, acked, f"seed {seed} round {r}"))
    assert acked > 0


def test_kill_while_appending_quick(tmp_path: Path) -> None:
    _crash_rounds(tmp_path, rounds=3, seed=1)


@pytest.mark.slow
def test_kill_while_appending_many_times(tmp_path: Path) -> None:
    _crash_rounds(tmp_path, rounds=40, seed=int.from_bytes(os.urandom(4), "big"))
