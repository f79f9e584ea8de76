"""``edgenode migrate``: move a running task (one with safe points) from a node to another executor."""

from __future__ import annotations

import argparse
import asyncio
import time

from .. import wire
from ..identity import KEY_FILE, Identity
from ..tasks import MoveDone, MoveOrder, arch_capability
from ._common import EXIT_NO_EXECUTOR, EXIT_OK, add_home, home_of, print_json
from ._order import send_order

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
    done = asyncio.run(send_order(args.node, wire.seal(node_key, order), MoveDone, args.timeout))
    if args.json:
        print_json({"task_id": done.task_id, "moved": done.moved, "executor": done.executor, "detail": done.detail})
    else:
        print(f"moved to {done.executor}" if done.moved else f"not moved: {done.detail}")
    return EXIT_OK if done.moved else EXIT_NO_EXECUTOR
