"""memnet building blocks: the address decoder, streams, the scheduler, random draws."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgenode.errors import LocalError
from edgenode.net import Unreachable
from edgenode.net._mem_core import Scheduler, Stream, unit_draw
from edgenode.net.memnet import ADDR_PREFIX, addr_peer_id, run_virtual


@given(st.text())
def test_addr_decoder_is_total(text: str) -> None:
    try:
        pid = addr_peer_id(text)
    except Unreachable:
        return
    assert pid
    assert "/" not in pid
    assert text in (f"{ADDR_PREFIX}{pid}/p2p/{pid}", f"/p2p/{pid}")


@given(st.text(alphabet=st.characters(blacklist_characters="/"), min_size=1))
def test_addr_round_trip(pid: str) -> None:
    assert addr_peer_id(f"{ADDR_PREFIX}{pid}/p2p/{pid}") == pid
    assert addr_peer_id(f"/p2p/{pid}") == pid


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**40), st.integers(0, 8))
def test_unit_draw_is_a_pure_unit_interval(seed: int, key: int, link: int, salt: int) -> None:
    u = unit_draw(seed, key, link, salt)
    assert 0.0 <= u < 1.0
    assert u == unit_draw(seed, key, link, salt)


def test_unit_draw_looks_uniform() -> None:
    draws = [unit_draw(7, k, 3, 0) for k in range(20_000)]
    assert abs(sum(draws) / len(draws) - 0.5) < 0.02
    assert sum(d < 0.1 for d in draws) == pytest.approx(2000, rel=0.1)


async def test_stream_is_bounded_and_ends_after_close() -> None:
    s: Stream[int] = Stream(2)
    assert s.put(1) and s.put(2)
    assert not s.put(3)
    s.close()
    assert not s.put(4)
    assert [x async for x in s] == [1, 2]


async def test_stream_wakes_a_waiting_reader_and_aclose_detaches() -> None:
    closed: list[Stream[int]] = []
    s: Stream[int] = Stream(8, closed.append)
    reader = asyncio.ensure_future(anext(s))
    await asyncio.sleep(0)  # let the reader park on the empty stream
    assert not reader.done()
    s.put(5)
    async with asyncio.timeout(5):
        assert await reader == 5
    s.put(6)
    await s.aclose()
    assert closed == [s]
    with pytest.raises(StopAsyncIteration):
        await anext(s)
    await s.aclose()
    assert closed == [s]


async def test_scheduler_runs_in_time_order_with_exact_now() -> None:
    sched = Scheduler(asyncio.get_running_loop(), max_batch=2)
    seen: list[tuple[str, float]] = []
    base = sched.now()

    def note(name: str) -> None:
        seen.append((name, sched.now() - base))
        if name == "b":
            sched.call_later(0.0, note, "b-child")

    sched.call_at(base + 0.02, note, "c")
    sched.call_at(base + 0.01, note, "b")
    sched.call_at(base + 0.01, note, "b2")
    sched.call_at(base, note, "a")
    assert sched.pending() == 4
    async with asyncio.timeout(5):
        await sched.wait_idle()
    assert [n for n, _ in seen] == ["a", "b", "b2", "b-child", "c"]
    assert [round(t, 9) for _, t in seen] == [0.0, 0.01, 0.01, 0.01, 0.02]
    assert sched.pending() == 0


def test_virtual_time_loop_jumps_instead_of_sleeping() -> None:
    async def nap() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(3600)
        return loop.time() - t0

    assert run_virtual(nap()) == pytest.approx(3600)


def test_virtual_time_loop_refuses_to_block_forever() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    with pytest.raises(LocalError):
        run_virtual(forever())
