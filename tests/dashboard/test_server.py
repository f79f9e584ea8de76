"""The dashboard's server: the page and its assets from the package, SSE, read-only, bound to
loopback unless told otherwise, a token when asked for."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest

from edgenode.cli import main
from edgenode.dashboard import DashboardServer, Feed, TaskRow, check_bind, is_loopback
from edgenode.errors import LocalError


async def _http(port: int, request: str, read: int = 1 << 16, timeout: float = 5.0) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        w.write(request.encode())
        await w.drain()
        out = b""
        while b"\r\n\r\n" not in out or len(out) < 10:
            chunk = await asyncio.wait_for(r.read(read), timeout)
            if not chunk:
                break
            out += chunk
        with_body = out
        try:
            while True:
                chunk = await asyncio.wait_for(r.read(read), 0.3)
                if not chunk:
                    break
                with_body += chunk
        except TimeoutError:
            pass
        return with_body
    finally:
        w.close()


def _get(path: str) -> str:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


@pytest.fixture
async def served() -> AsyncIterator[tuple[Feed, DashboardServer]]:
    feed = Feed("test swarm")
    server = DashboardServer(feed, port=0, flush_s=0.02)
    await server.start()
    yield feed, server
    await server.stop()


async def test_page_assets_and_snapshot(served: tuple[Feed, DashboardServer]) -> None:
    feed, server = served
    assert server.host == "127.0.0.1" and server.url == f"http://127.0.0.1:{server.port}/"
    page = await _http(server.port, _get("/"))
    assert page.startswith(b"HTTP/1.1 200") and b"static/vendor/uplot/uPlot.iife.min.js" in page
    assert b"default-src 'none'" in page and b"connect-src 'self'" in page  # nothing from elsewhere
    assert b"//cdn" not in page and b"https://" not in page
    js = await _http(server.port, _get("/static/vendor/uplot/uPlot.iife.min.js"))
    assert js.startswith(b"HTTP/1.1 200") and b"(v1.6.32)" in js
    assert (await _http(server.port, _get("/static/../_server.py"))).split(b" ")[1] in (b"404", b"400")
    feed.see_node("a")
    snap = await _http(server.port, _get("/api/snapshot"))
    body = json.loads(snap.split(b"\r\n\r\n", 1)[1])
    assert body["meta"]["title"] == "test swarm" and body["nodes"][0]["id"] == "a"


async def test_read_only(served: tuple[Feed, DashboardServer]) -> None:
    _feed, server = served
    for method in ("POST", "PUT", "DELETE"):
        for path in ("/", "/api/snapshot", "/api/events"):
            resp = await _http(server.port, f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                                            "Connection: close\r\n\r\n")
            assert resp.split(b" ")[1] == b"405", (method, path)


async def test_events_start_with_a_snapshot_then_deltas(served: tuple[Feed, DashboardServer]) -> None:
    feed, server = served
    feed.see_node("a")
    r, w = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        w.write(_get("/api/events").encode())
        await w.drain()
        buf = b""
        while b"event: snapshot" not in buf or b'"faults"' not in buf:
            buf += await asyncio.wait_for(r.read(65536), 5)
        assert b"text/event-stream" in buf and b'"id":"a"' in buf
        await asyncio.sleep(0.05)
        feed.on_task(TaskRow("t1", "wasm", "a", "ok", 3.0, 0.1, int(time.time() * 1000)))
        buf = b""
        while b"event: delta" not in buf or b'"t1"' not in buf:
            buf += await asyncio.wait_for(r.read(65536), 5)
        data = buf.split(b"data: ", 1)[1].split(b"\n", 1)[0]
        delta = json.loads(data)
        assert [t["id"] for t in delta["tasks"]] == ["t1"]
        assert server.clients == 1
    finally:
        w.close()


async def test_token() -> None:
    feed = Feed("t")
    server = DashboardServer(feed, port=0, token="s3cret-s3cret-s3cret")
    async with server:
        assert (await _http(server.port, _get("/api/snapshot"))).split(b" ")[1] == b"401"
        assert (await _http(server.port, _get("/api/events"))).split(b" ")[1] == b"401"
        assert (await _http(server.port, _get("/api/snapshot?token=wrong"))).split(b" ")[1] == b"401"
        ok = await _http(server.port, _get("/api/snapshot?token=s3cret-s3cret-s3cret"))
        assert ok.split(b" ")[1] == b"200"
        bearer = ("GET /api/snapshot HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-s3cret-s3cret\r\n"
                  "Connection: close\r\n\r\n")
        assert (await _http(server.port, bearer)).split(b" ")[1] == b"200"


def test_binding_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    check_bind("127.0.0.1", swarm_mode=True, token=None)
    check_bind("0.0.0.0", swarm_mode=False, token=None)  # open mode: the explicit address is the flag
    check_bind("0.0.0.0", swarm_mode=True, token="t" * 16)
    with pytest.raises(LocalError, match="token"):
        check_bind("0.0.0.0", swarm_mode=True, token=None)


async def test_port_in_use_is_a_local_error(served: tuple[Feed, DashboardServer]) -> None:
    _feed, server = served
    other = DashboardServer(Feed("x"), port=server.port)
    with pytest.raises(LocalError, match="cannot listen"):
        await other.start()


def test_cli_options(capsys: pytest.CaptureFixture[str]) -> None:
    from edgenode.cli._main import build_parser

    p = build_parser()
    args = p.parse_args(["dashboard", "--bootstrap", "/ip4/127.0.0.1/tcp/1/p2p/X"])
    assert args.port == 8080 and args.host == "127.0.0.1"
    args = p.parse_args(["run", "--dashboard-port", "0"])
    assert args.dashboard_port == 0 and args.dashboard_host == "127.0.0.1"
    with pytest.raises(SystemExit):
        main(["dashboard"])  # --bootstrap is required
    assert "--bootstrap" in capsys.readouterr().err


def test_simnet_cli_options() -> None:
    from simnet.cli import build_parser

    args = build_parser().parse_args(["run", "--live", "--port", "0"])
    assert args.live and args.port == 0 and args.host == "127.0.0.1" and not args.hold
