"""``edgenode migrate``: move a running task (one with safe points) from a node to another executor."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

from .. import wire
from ..errors import RemoteError
from ..identity import KEY_FILE, Identity
from ..net.p2p import P2PTransport
from ..tasks import MOVE_PROTOCOL, MoveDone, MoveOrder, arch_capability
from ._common import EXIT_NO_EXECUTOR, EXIT_OK, add_home, home_of, print_json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "migrate",
        help="move a running task with safe points to another executor (edge to cloud and back)",
        description="Checkpoint a running task on a node at its next safe point and resume it on another "
                    "executor; its submitter still gets one verified result. Signed with the node's own key "
                    "(--home), so only the node's operator can order it.",
    )
    p.add_argument("task_id", metavar="TASK_ID", help="the task's id (edgenode submit --json prints it)")
    add_home(p)
    p.add_argument("--node", required=True, metavar="MULTIADDR", help="address of the node running the task")
    p.add_argument("--to", nargs="+", default=[], metavar="PEER", help="executor(s) to offer it to, in order")
    p.add_argument("--to-arch", default=None, metavar="ARCH",
                   help="an executor advertising this CPU architecture (aarch64, x86_64)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S", help="seconds to wait for the move")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    node_key = Identity.load(home_of(args) / KEY_FILE)
    requires = (arch_capability(args.to_arch),) if args.to_arch else ()
    order = MoveOrder(args.task_id, tuple(args.to), requires, int(time.time() * 1000))
    done = asyncio.run(_send(args.node, wire.seal(node_key, order), args.timeout))
    if args.json:
        print_json({"task_id": done.task_id, "moved": done.moved, "executor": done.executor, "detail": done.detail})
    else:
        print(f"moved to {done.executor}" if done.moved else f"not moved: {done.detail}")
    return EXIT_OK if done.moved else EXIT_NO_EXECUTOR


async def _send(addr: str, sealed: bytes, timeout: float) -> MoveDone:
    transport = P2PTransport(Identity.generate(), listen=["/ip4/127.0.0.1/tcp/0"])
    await transport.start()
    try:
        peer = await transport.connect(addr, timeout=10.0)
        answer = await transport.request(peer, MOVE_PROTOCOL, sealed, timeout=timeout + 10.0)
    finally:
        with contextlib.suppress(RuntimeError):
            await transport.stop()
    env, done = wire.open_as(MoveDone, answer)
    if env.author_id != peer:
        raise RemoteError("the answer is not signed by the node")
    return done
