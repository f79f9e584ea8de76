"""The light peer that ``submit``, ``infer``, ``status`` and ``fl start --bootstrap`` join the swarm as."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..config import SwarmSection
from ..identity import KEY_FILE, Identity
from ..net.p2p import P2PTransport
from ..security import SwarmGuard, load_guard
from ..tasks import Submitter, SystemClock
from ._swarm import MEMBER_CERT

__all__ = ["add_peer_options", "peer_session", "light_identity"]

T = TypeVar("T")


class _Options(Protocol):
    """An argparse parser or argument group."""

    def add_argument(self, *args: Any, **kwargs: Any) -> Any: ...


def add_peer_options(p: _Options, *, required: bool, bootstrap_help: str, key_help: str, cert_help: str) -> None:
    """The options :func:`peer_session` reads: --bootstrap, --key, --home, --cert, --listen, --join-timeout."""
    p.add_argument("--bootstrap", nargs="+", action="extend", required=required, default=None, metavar="MULTIADDR",
                   help=bootstrap_help)
    p.add_argument("--key", type=Path, default=None, help=key_help)
    p.add_argument("--home", type=Path, default=None, metavar="DIR",
                   help="use this node home's key (node.key) and swarm certificate (swarm.cert, if any)")
    p.add_argument("--cert", type=Path, default=None, metavar="FILE", help=cert_help)
    p.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0", metavar="MULTIADDR",
                   help="where this light peer listens (default /ip4/127.0.0.1/tcp/0)")
    p.add_argument("--join-timeout", type=float, default=10.0, metavar="S", help="seconds to reach a bootstrap peer")


def light_identity(args: argparse.Namespace) -> tuple[Identity, SwarmGuard | None]:
    """The light peer's identity and, in swarm mode, its guard, from the options of
    :func:`add_peer_options`: the key is ``--key``, else the ``--home``'s ``node.key`` (which
    must exist), else an ephemeral one; a membership certificate (``--cert``, else the home's
    ``swarm.cert`` if present) puts it in swarm mode."""
    home: Path | None = args.home
    key: Path | None = args.key or (home / KEY_FILE if home is not None else None)
    ident = Identity.load(key) if key else Identity.generate()
    cert: Path | None = args.cert
    if cert is None and home is not None and (home / MEMBER_CERT).exists():
        cert = home / MEMBER_CERT
    guard = None
    if cert is not None:
        guard = load_guard(ident, home or Path("."), SwarmSection(), SystemClock(), cert=cert)
    return ident, guard


async def peer_session(args: argparse.Namespace, body: Callable[[Submitter], Awaitable[T]]) -> T:
    """Join the swarm at ``args.bootstrap`` as a light peer, run ``body`` with it, leave.

    The key is ``--key``, else the home's ``node.key``, else an ephemeral one; with a membership
    certificate (``--cert``, else the home's ``swarm.cert`` if present) it joins in swarm mode.
    """
    ident, guard = light_identity(args)
    transport = P2PTransport(ident, listen=[args.listen])
    await transport.start()
    sub = Submitter(ident, transport, guard=guard)
    try:
        await sub.join(args.bootstrap, timeout=args.join_timeout)
        return await body(sub)
    finally:
        await sub.close()
        with contextlib.suppress(RuntimeError):
            await transport.stop()
