"""The dashboard's web server: the page, its static assets, ``/api/snapshot`` and ``/api/events`` (SSE).

Starlette for the routes, uvicorn for HTTP, both on the caller's asyncio loop (the node's own
loop: no thread, no second process).  The server is read-only: every route is a GET and none
changes anything.  It binds 127.0.0.1 unless told otherwise (:func:`check_bind` says what
another address needs); with a token, every ``/api`` request must carry it (``?token=`` or
``Authorization: Bearer``).

Live updates: one flusher task wakes when the :class:`~edgenode.dashboard.Feed` changes, waits
``flush_s`` to coalesce what else changes meanwhile, takes one delta, encodes it once and hands
the same bytes to every connected page.  A page that cannot keep up (its queue full) is sent a
fresh snapshot instead of the deltas it missed.  Idle, the server does nothing at all (no
ticks; SSE keep-alive comments every ``heartbeat_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import LocalError
from ._feed import Feed

__all__ = ["DashboardServer", "check_bind", "is_loopback", "STATIC_DIR", "CSP"]

log = logging.getLogger("edgenode.dashboard")

STATIC_DIR = Path(str(resources.files(__package__).joinpath("static")))
"""The page, its script and style, and the vendored charting library."""

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
"""The page may load nothing from anywhere but this server."""

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml", ".txt": "text/plain"}

_RESYNC = b""
"""Queued for a page that fell behind: send it a whole snapshot."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, swarm_mode: bool, token: str | None) -> None:
    """Refuse an address the dashboard must not bind as asked: anything but loopback needs the
    caller to have named it (it did, by passing ``host``) and, in swarm mode, a token."""
    if is_loopback(host):
        return
    if swarm_mode and not token:
        raise LocalError(f"the dashboard binds {host} only with a token in swarm mode "
                         "(give --dashboard-token-file / --token-file, or bind 127.0.0.1)")


class _Client:
    def __init__(self, size: int) -> None:
        self.q: asyncio.Queue[bytes] = asyncio.Queue(size)
        self.behind = False


class DashboardServer:
    """Serves ``feed`` on ``host:port`` (port 0: any free port; see :attr:`port` after start)."""

    def __init__(self, feed: Feed, *, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
                 flush_s: float = 0.1, heartbeat_s: float = 15.0, queue_size: int = 64,
                 before_snapshot: Callable[[], None] | None = None) -> None:
        self.feed = feed
        self.host = host
        self.port = port
        self.token = token or None
        self.flush_s = flush_s
        self.heartbeat_s = heartbeat_s
        self.queue_size = queue_size
        self.before_snapshot = before_snapshot
        """Called before a snapshot is taken (a source may refresh what it polls)."""
        self._clients: set[_Client] = set()
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._server: Any = None
        self._sock: socket.socket | None = None
        self.sent_deltas = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def clients(self) -> int:
        return len(self._clients)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        import uvicorn

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(64)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise LocalError(f"the dashboard cannot listen on {self.host}:{self.port}: {exc.strerror}") from exc
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(self.app(), lifespan="off", log_config=None, access_log=False, ws="none",
                                server_header=False, date_header=False, timeout_graceful_shutdown=2,
                                log_level="warning")
        server = uvicorn.Server(config)
        config.load()
        server.lifespan = config.lifespan_class(config)
        # startup/shutdown without uvicorn's own main loop: no 10 Hz tick, no signal handlers
        # taken from the node, the loop is the caller's
        await server.startup(sockets=[sock])
        self._server = server
        self.feed.listener = self._changed.set
        self._flusher = asyncio.create_task(self._flush_loop(), name="dashboard flusher")
        log.info("dashboard serving", extra={"url": self.url})

    async def stop(self) -> None:
        self._closing.set()
        if self.feed.listener == self._changed.set:
            self.feed.listener = None
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        for c in list(self._clients):
            with contextlib.suppress(asyncio.QueueFull):
                c.q.put_nowait(_RESYNC)
        if self._server is not None:
            server, self._server = self._server, None
            server.should_exit = True
            await server.shutdown(sockets=[self._sock] if self._sock else None)
        self._sock = None

    async def __aenter__(self) -> DashboardServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- live updates --------------------------------------------------------------------------
    def flush(self) -> None:
        """Send what changed now (the flusher does this ``flush_s`` after a change)."""
        delta = self.feed.take_delta()
        if delta is None:
            return
        if not self._clients:
            return
        data = _event("delta", delta)
        self.sent_deltas += 1
        for c in list(self._clients):
            if c.behind:
                continue
            try:
                c.q.put_nowait(data)
            except asyncio.QueueFull:
                c.behind = True  # it gets a whole snapshot once it drains

    async def _flush_loop(self) -> None:
        while True:
            await self._changed.wait()
            await asyncio.sleep(self.flush_s)
            self._changed.clear()
            try:
                self.flush()
            except Exception:  # a bad value in the feed must not end the live page
                log.exception("dashboard flush failed")

    def _snapshot_event(self) -> bytes:
        if self.before_snapshot is not None:
            self.before_snapshot()
        self.flush()  # what is pending goes to the other pages; this one starts from the snapshot
        return _event("snapshot", self.feed.snapshot())

    # -- HTTP ------------------------------------------------------------------------------------
    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response, StreamingResponse
        from starlette.routing import Route

        headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                   "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}

        def denied(request: Request) -> Response | None:
            if self.token is None:
                return None
            given = request.query_params.get("token", "")
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:]
            if hmac.compare_digest(given.encode(), self.token.encode()):
                return None
            return JSONResponse({"error": "a token is needed"}, status_code=401, headers=headers)

        files = _static_files()  # read once: a few small files, served from memory

        async def page(request: Request) -> Response:
            return Response(files["index.html"], media_type=_TYPES[".html"], headers=headers)

        async def static(request: Request) -> Response:
            rel = request.path_params["path"]
            if rel not in files:
                return Response("not found", status_code=404, headers=headers)
            kind = _TYPES.get(Path(rel).suffix, "application/octet-stream")
            return Response(files[rel], media_type=kind, headers={**headers, "Cache-Control": "max-age=3600"})

        async def snapshot(request: Request) -> Response:
            if (no := denied(request)) is not None:
                return no
            if self.before_snapshot is not None:
                self.before_snapshot()
            return JSONResponse(self.feed.snapshot(), headers=headers)

        async def events(request: Request) -> Response:
            if (no := denied(request)) is not None:
                return no
            client = _Client(self.queue_size)
            first = self._snapshot_event()
            self._clients.add(client)
            return StreamingResponse(self._stream(client, first), media_type="text/event-stream",
                                     headers={**headers, "X-Accel-Buffering": "no"})

        async def health(request: Request) -> Response:
            return JSONResponse({"ok": True, "clients": len(self._clients)}, headers=headers)

        return Starlette(routes=[
            Route("/", page, methods=["GET"]),
            Route("/static/{path:path}", static, methods=["GET"]),
            Route("/api/snapshot", snapshot, methods=["GET"]),
            Route("/api/events", events, methods=["GET"]),
            Route("/api/health", health, methods=["GET"]),
        ])

    async def _stream(self, client: _Client, first: bytes) -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n\n" + first
            while not self._closing.is_set():
                try:
                    data = await asyncio.wait_for(client.q.get(), self.heartbeat_s)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if data == _RESYNC or client.behind:
                    if self._closing.is_set():
                        return
                    while not client.q.empty():
                        client.q.get_nowait()
                    client.behind = False
                    yield self._snapshot_event()
                    continue
                yield data
        finally:
            self._clients.discard(client)


def _event(name: str, payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, separators=(",", ":"), allow_nan=False, default=_nan_free)
    return f"event: {name}\ndata: {data}\n\n".encode()


def _nan_free(obj: object) -> object:
    return str(obj)


def _static_files() -> dict[str, bytes]:
    """Every file under :data:`STATIC_DIR` by its relative path."""
    return {p.relative_to(STATIC_DIR).as_posix(): p.read_bytes() for p in sorted(STATIC_DIR.rglob("*")) if p.is_file()}
