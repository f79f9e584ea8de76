"""``edgenode dashboard``: join the swarm as a light peer and serve the live dashboard page.

The light peer executes nothing and advertises nothing: it follows the advert, ledger-head and
FL-progress topics, asks peers for the adverts they hold and reads the tails of the chains
whose heads move (see :mod:`edgenode.dashboard`).  ``edgenode run --dashboard-port N`` serves
the same page from inside a node; :func:`serve_options` and :func:`read_token` are shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import LocalError
from ..net import NetError, Unreachable
from ._common import EXIT_OK, EXIT_UNREACHABLE, ExitCodes, run_mapped
from ._peer import add_peer_options, light_identity

__all__ = ["register", "read_token"]

TOKEN_ENV = "EDGENODE_DASHBOARD_TOKEN"


def register(sub: Any) -> None:
    p = sub.add_parser("dashboard", help="join the swarm as a light peer and serve a live web page of it")
    add_peer_options(p, required=True, bootstrap_help="peer(s) of the swarm to join through",
                     key_help="key file of this light peer (default: the home's node.key, else a new key)",
                     cert_help="membership certificate (swarm mode; default: the home's swarm.cert if any)")
    p.add_argument("--port", type=int, default=8080, help="port of the page (default 8080; 0: any free port)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address of the page (default 127.0.0.1; anything else is reachable by others and, "
                        "in swarm mode, needs --token-file)")
    p.add_argument("--token-file", type=Path, default=None, metavar="FILE",
                   help=f"a token the page's API requires (or ${TOKEN_ENV})")
    p.set_defaults(func=cmd_dashboard)


def read_token(path: Path | None) -> str | None:
    """The token from ``path`` (stripped), else ``$EDGENODE_DASHBOARD_TOKEN``, else None."""
    import os

    if path is not None:
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise LocalError(f"cannot read the token file {path}: {exc.strerror}") from exc
        if len(token) < 16:
            raise LocalError("the dashboard token must be at least 16 characters")
        return token
    return os.environ.get(TOKEN_ENV) or None


_EXIT_CODES: ExitCodes = ((Unreachable, EXIT_UNREACHABLE),)


def cmd_dashboard(args: argparse.Namespace) -> int:
    return run_mapped(lambda: asyncio.run(_dashboard(args)), _EXIT_CODES)


async def _dashboard(args: argparse.Namespace) -> int:
    from ..dashboard import DashboardServer, Feed, SwarmSource, check_bind
    from ..net.p2p import P2PTransport

    ident, guard = light_identity(args)
    token = read_token(args.token_file)
    check_bind(args.host, swarm_mode=guard is not None, token=token)
    transport = P2PTransport(ident, listen=[args.listen])
    feed = Feed(f"edgenode swarm{f' {guard.swarm_id[:12]}' if guard else ''}", t0_ms=int(time.time() * 1000))
    source = SwarmSource(feed, transport, ident, guard=guard)
    server = DashboardServer(feed, host=args.host, port=args.port, token=token)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await transport.start()
    try:
        if guard is not None:
            await guard.start(transport)
        joined, errors = [], []
        for addr in args.bootstrap:
            try:
                joined.append(await transport.connect(addr, timeout=args.join_timeout))
            except NetError as exc:
                errors.append(f"{addr}: {exc}")
        if not joined:
            raise Unreachable("no bootstrap peer reachable" + (f" ({'; '.join(errors)})" if errors else ""))
        await source.start()
        await server.start()
        try:
            print(f"peer id {ident.peer_id}")
            print(f"dashboard {server.url}")
            sys.stdout.flush()
            await stop.wait()
        finally:
            await server.stop()
            await source.stop()
    finally:
        if guard is not None:
            await guard.stop()
        with contextlib.suppress(RuntimeError, NetError):
            await transport.stop()
    return EXIT_OK
