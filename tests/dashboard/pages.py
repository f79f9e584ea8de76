"""Looking at the dashboard in headless Chromium: shared by the browser tests, the benchmark and
``scripts/dashboard-screenshot.sh`` (the README's picture)."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from edgenode.dashboard.headless import Chromium, find_chromium, png_is_blank

SCREENSHOT_ENV = "EDGENODE_DASHBOARD_SCREENSHOT"
"""Where the simulation test also writes its screenshot, shrunk (scripts/dashboard-screenshot.sh)."""

NODES_SHOWN = "document.querySelectorAll('#graph .node:not(.self)').length"
ROWS_WITH_STATUS = ("[...document.querySelectorAll('#tasks tbody tr[data-status]')]"
                    ".map(r => [r.dataset.task, r.dataset.status])")


def need_chromium() -> str:
    """The Chromium binary, or skip (CI installs it: scripts/setup.sh)."""
    path = find_chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI (scripts/setup.sh installs it)")
        pytest.skip("no chromium on PATH: apt-get install chromium (scripts/setup.sh does, as root)")
    return path


@dataclass
class Look:
    """What a look at the page found."""

    nodes: int = 0
    rows: list[list[str]] = field(default_factory=list)
    png: bytes = b""
    requests: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


async def look(url: str, *, nodes: int, task: Callable[[], Awaitable[str | None]] | None = None,
               timeout: float = 60.0, settle_s: float = 1.0, offline: bool = True,
               screenshot: Path | None = None) -> Look:
    """Load ``url``; wait until the peer graph shows ``nodes`` nodes (the observer aside), then
    (``task``: submit one, which returns its id or None for any) until a task row with a status is
    on the page; take a screenshot.  The page is asserted not blank and to have asked nothing of
    any host but the dashboard's."""
    out = Look()
    async with await Chromium.launch(offline=offline) as b:
        await b.goto(url)
        out.nodes = await b.wait_for(f"{NODES_SHOWN} >= {nodes} && {NODES_SHOWN}", timeout)
        want = await task() if task is not None else None
        cond = f"(() => {{ const r = {ROWS_WITH_STATUS}; " + (
            f"return r.some(x => x[0] === {want!r} && x[1]) && r; }})()" if want else "return r.length && r; })()")
        out.rows = await b.wait_for(cond, timeout)
        await asyncio.sleep(settle_s)
        out.png = await b.screenshot(screenshot)
        out.stats = await b.eval("window.dashStats")
        out.requests, out.failed, out.errors = list(b.requests), list(b.failed), list(b.errors)
    assert not png_is_blank(out.png), "the screenshot is blank"
    origin = urlsplit(url)
    others = [r for r in out.requests if not r.startswith(("data:", f"{origin.scheme}://{origin.netloc}/"))]
    assert not others, f"the page asked other hosts: {others}"
    assert not out.failed, f"requests failed: {out.failed}"
    assert not out.errors, f"page errors: {out.errors}"
    return out


def save_small(png: bytes, path: Path, width: int = 1100) -> None:
    """``png`` shrunk to ``width`` and to 128 colours (a small picture for the README)."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    img = img.resize((width, round(img.height * width / img.width)), Image.Resampling.LANCZOS)
    img = img.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)
