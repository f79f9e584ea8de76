"""Headless Chromium over the DevTools protocol: how the tests, the benchmark and the README's
screenshot look at the dashboard as a person would.

Debian's ``chromium`` is started with its own throwaway profile and (``offline=True``) with every
host but 127.0.0.1 unreachable: a host-resolver rule that resolves nothing else and a proxy that
does not exist for anything that is not loopback.  Every request the page makes is recorded
(:attr:`Chromium.requests`), so a test can assert that nothing but the node was asked.

Needs the ``websockets`` package (the ``dev`` extra) and a ``chromium`` binary; :func:`find_chromium`
says whether there is one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["Chromium", "find_chromium", "png_is_blank", "BrowserError"]

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


class BrowserError(RuntimeError):
    """The browser could not be started or driven."""


def find_chromium() -> str | None:
    """The path of a Chromium to drive ($CHROMIUM first), or None."""
    env = os.environ.get("CHROMIUM")
    if env and shutil.which(env):
        return shutil.which(env)
    for name in _CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def png_is_blank(data: bytes, *, min_colours: int = 8) -> bool:
    """True when the PNG is (nearly) one colour: fewer than ``min_colours`` distinct colours
    that cover at least 0.1% of the pixels each."""
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    img.thumbnail((400, 400))
    colours = img.getcolors(maxcolors=1 << 20) or []
    floor = img.width * img.height / 1000
    return sum(1 for n, _c in colours if n >= floor) < min_colours


class Chromium:
    """One headless Chromium with one page; ``async with Chromium.launch() as b:``."""

    def __init__(self, proc: subprocess.Popen[bytes], profile: tempfile.TemporaryDirectory[str], ws: Any) -> None:
        self.proc = proc
        self._profile = profile
        self._ws = ws
        self._id = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self.requests: list[str] = []
        """Every URL the page asked for (Network.requestWillBeSent), in order."""
        self.failed: list[tuple[str, str]] = []
        """(URL, error) of requests that failed."""
        self.errors: list[str] = []
        """Uncaught exceptions and console errors of the page."""
        self._urls: dict[str, str] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def launch(cls, *, offline: bool = True, width: int = 1400, height: int = 1000,
                     binary: str | None = None, timeout: float = 30.0) -> Chromium:
        import websockets

        path = binary or find_chromium()
        if path is None:
            raise BrowserError("no chromium on PATH (apt-get install chromium)")
        profile = tempfile.TemporaryDirectory(prefix="edgenode-chromium-")
        args = [
            path, "--headless=new", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
            "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
            f"--user-data-dir={profile.name}", f"--window-size={width},{height}",
            "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
        ]
        if os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium's sandbox refuses to run as root (CI runs as root)
        if offline:
            args += ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
                     "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1;localhost"]
        args.append("about:blank")
        proc = await asyncio.to_thread(subprocess.Popen, args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
        try:
            port_file = Path(profile.name) / "DevToolsActivePort"
            deadline = time.monotonic() + timeout
            while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
                if proc.poll() is not None:
                    raise BrowserError(f"chromium exited with {proc.returncode} at start")
                if time.monotonic() > deadline:
                    raise BrowserError("chromium did not open its DevTools port in time")
                await asyncio.sleep(0.05)
            port = int(port_file.read_text().splitlines()[0])
            targets = await asyncio.to_thread(_get_json, f"http://127.0.0.1:{port}/json/list")
            page = next(t for t in targets if t.get("type") == "page")
            ws = await websockets.connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout)
        except BaseException:
            _kill(proc)
            profile.cleanup()
            raise
        self = cls(proc, profile, ws)
        for domain in ("Page", "Runtime", "Network", "Log"):
            await self.send(f"{domain}.enable")
        await self.send("Emulation.setDeviceMetricsOverride",
                        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        return self

    async def __aenter__(self) -> Chromium:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        with contextlib.suppress(Exception):
            await self._ws.close()
        await asyncio.to_thread(_kill, self.proc)
        self._profile.cleanup()

    # -- protocol ------------------------------------------------------------------------------
    async def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        self._id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[self._id] = fut
        await self._ws.send(json.dumps({"id": self._id, "method": method, "params": params or {}}))
        return await asyncio.wait_for(fut, timeout)

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                msg = json.loads(raw)
                if "id" in msg:
                    fut = self._waiting.pop(msg["id"], None)
                    if fut is not None and not fut.done():
                        if "error" in msg:
                            fut.set_exception(BrowserError(f"{msg['error']}"))
                        else:
                            fut.set_result(msg.get("result"))
                    continue
                self._event(msg.get("method", ""), msg.get("params", {}))
        finally:
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(BrowserError("the DevTools connection closed"))

    def _event(self, method: str, p: dict[str, Any]) -> None:
        if method == "Network.requestWillBeSent":
            url = p["request"]["url"]
            self.requests.append(url)
            self._urls[p["requestId"]] = url
        elif method == "Network.loadingFailed":
            if not p.get("canceled"):
                self.failed.append((self._urls.get(p["requestId"], "?"), p.get("errorText", "")))
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.errors.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            self.errors.append(p["entry"].get("text", ""))

    # -- what a test does ------------------------------------------------------------------------
    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})

    async def eval(self, expression: str) -> Any:
        res = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                   "awaitPromise": True})
        if "exceptionDetails" in res:
            raise BrowserError(f"{expression!r}: {res['exceptionDetails'].get('text')}")
        return res.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 30.0, every: float = 0.1) -> Any:
        """Evaluate ``expression`` until it is truthy; its value (TimeoutError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            with contextlib.suppress(BrowserError):
                last = await self.eval(expression)
                if last:
                    return last
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} still {last!r} after {timeout} s")
            await asyncio.sleep(every)

    async def screenshot(self, path: Path | None = None) -> bytes:
        res = await self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})
        data = base64.b64decode(res["data"])
        if path is not None:
            await asyncio.to_thread(path.write_bytes, data)
        return data


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:  # the browser's own DevTools port on 127.0.0.1
        return json.loads(r.read())


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
