"""Many live instances at once, and runs from asyncio through worker threads."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from edgenode.sandbox import Limits, PreparedRun, Sandbox, SandboxConfig, Status, TaskIO

TINY = Limits(fuel=1_000_000, timeout_ms=10_000, memory_mb=1, max_output_bytes=128)


@pytest.mark.slow
def test_twenty_thousand_live_instances(tasks: dict[str, bytes]) -> None:
    # Small memory reservations keep each instance's address space small (wasmtime #8607).
    with Sandbox(SandboxConfig()) as sb:
        h = sb.compile(tasks["hello"])
        held: list[PreparedRun] = []
        for _ in range(20_000):
            p = sb.prepare(h, TaskIO(), TINY)
            assert p.failed is None
            held.append(p)
        assert all(held[i].start().stdout == b"hello\n" for i in (0, 9_999, 19_999))


async def test_runs_from_asyncio_threads(sandbox: Sandbox, tasks: dict[str, bytes]) -> None:
    h = sandbox.compile(tasks["sha256"])
    inputs = [f"input {i}".encode() * i for i in range(12)]
    results = await asyncio.wait_for(
        asyncio.gather(*(asyncio.to_thread(sandbox.run, h, TaskIO(stdin=d), TINY) for d in inputs)), timeout=120
    )
    assert all(r.status is Status.OK for r in results)
    assert [r.stdout.strip().decode() for r in results] == [hashlib.sha256(d).hexdigest() for d in inputs]
