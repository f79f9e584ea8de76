"""The dashboard in headless Chromium, cut off from every host but the dashboard's: a 10-node
memnet simulation (``simnet --live``'s path) and three real ``edgenode run`` processes on
loopback (``edgenode run --dashboard-port`` and ``edgenode dashboard --bootstrap``).

Each waits until the peer graph shows every node and a submitted task's row with its status,
then checks the screenshot is not blank and that the page asked nothing of any other host
(the browser resolves no other name and has no route but loopback)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest
import wasmtime

from edgenode.dashboard import DashboardServer
from simnet._live import run_live
from simnet._scenario import default_scenario
from simnet._swarm import make_backend
from tests.dashboard.pages import SCREENSHOT_ENV, look, need_chromium, save_small
from tests.integration._swarm_procs import EDGENODE, Lines, NodeProc, cli, env

pytestmark = [pytest.mark.slow, pytest.mark.integration]
CAT = Path(__file__).resolve().parents[1] / "node" / "cat.wat"


@pytest.mark.timeout(240)
async def test_simulation_page_in_chromium(tmp_path: Path) -> None:
    need_chromium()
    sc = default_scenario().with_overrides(nodes=10, duration_s=20.0, seed=11)
    serving: asyncio.Future[DashboardServer] = asyncio.get_running_loop().create_future()
    hold = asyncio.Event()
    run = asyncio.create_task(run_live(sc, make_backend(sc), port=0, on_serving=serving.set_result, hold=hold))
    try:
        await asyncio.wait({serving, run}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
        if run.done():
            run.result()  # the run failed before it served: say why
        server = serving.result()
        got = await look(server.url, nodes=10, settle_s=6.0, screenshot=tmp_path / "sim.png")
        assert got.nodes >= 10
        assert any(status == "ok" for _id, status in got.rows)
        assert got.stats["snapshots"] >= 1 and got.stats["deltas"] > 0 and got.stats["errors"] == 0
        if os.environ.get(SCREENSHOT_ENV):
            save_small(got.png, Path(os.environ[SCREENSHOT_ENV]))
    finally:
        hold.set()
        res = await run
    assert res.invariants_hold


@pytest.fixture
def cat_module(tmp_path: Path) -> Path:
    p = tmp_path / "cat.wasm"
    p.write_bytes(bytes(wasmtime.wat2wasm(CAT.read_text())))
    return p


def _url_line(lines: Lines, timeout: float = 60.0) -> str:
    while True:
        line = lines.next(timeout)
        assert line is not None, "the process ended before serving the dashboard"
        if line.startswith("dashboard "):
            return line.split()[-1]


@pytest.mark.timeout(300)
async def test_three_processes_page_in_chromium(tmp_path: Path, cat_module: Path) -> None:
    need_chromium()
    n0 = NodeProc(tmp_path / "n0", extra=["--dashboard-port", "0"])
    nodes = [n0]
    light: subprocess.Popen[str] | None = None
    light_lines: Lines | None = None
    try:
        node_url = _url_line(n0.lines)
        boot = n0.addrs[0]
        nodes += [NodeProc(tmp_path / f"n{i}", bootstrap=[boot]) for i in (1, 2)]
        light = await asyncio.to_thread(
            subprocess.Popen, [*EDGENODE, "dashboard", "--bootstrap", boot, "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env())
        light_lines = Lines(light)
        light_url = _url_line(light_lines)
        (tmp_path / "in.txt").write_text("hello dashboard\n")
        submitted: list[str] = []

        async def submit() -> str:
            res = await asyncio.to_thread(cli, "submit", str(cat_module), "--bootstrap", boot,
                                          "--stdin", str(tmp_path / "in.txt"), "--json")
            assert res.returncode == 0, res.stderr
            submitted.append(json.loads(res.stdout)["task_id"])
            return submitted[-1]

        # the page served by a node, and the page of the light peer that joined through it
        got = await look(node_url, nodes=2, task=submit, timeout=90, screenshot=tmp_path / "node.png")
        assert got.nodes >= 2
        got = await look(light_url, nodes=3, task=submit, timeout=90, screenshot=tmp_path / "light.png")
        assert got.nodes >= 3
        assert dict(got.rows)[submitted[-1]] == "ok"
    finally:
        if light is not None:
            light.terminate()
            assert light.wait(30) == 0, "edgenode dashboard did not stop cleanly on SIGTERM"
            if light_lines is not None:
                light_lines.close()
        for n in nodes:
            n.terminate()
