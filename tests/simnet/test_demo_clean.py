"""The demo scenario, briefly: it ends with no traceback and no "never retrieved" (issue 14).

``make demo`` used to end with "Task exception was never retrieved ... ChainWriter._drain ...
ValueError: Connection closed": tasks still ran and wrote after the store closed.  This runs the
embedded demo scenario (every fault kind, FL, the real node runtime on memnet) shortened, with
warnings as errors (pytest's config), and fails on anything reaching the event loop's exception
handler or any log record at ERROR or with a traceback.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path
from typing import Any

import pytest

from simnet import default_scenario, run_scenario
from simnet._swarm import make_backend

pytestmark = pytest.mark.timeout(240)


async def test_demo_scenario_ends_without_traceback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    # 10 nodes (the FL participants), 6 s: the shortest run in which FL is still going when the
    # workload drains (what used to leave writes after the store closed)
    sc = default_scenario().with_overrides(nodes=10, duration_s=6.0)
    caplog.set_level(logging.WARNING)
    res = await run_scenario(sc, make_backend(sc, tmp_path / "swarm"))
    gc.collect()  # a task that failed unobserved reports itself when collected
    await asyncio.sleep(0)
    assert res.invariants_hold
    assert res.figure("simnet.tasks_submitted") > 0
    assert loop_errors == [], [ctx.get("message") for ctx in loop_errors]
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info is not None]
    assert bad == [], [r.getMessage() for r in bad]
    assert "never retrieved" not in caplog.text
    assert "Traceback" not in caplog.text
