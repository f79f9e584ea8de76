"""``edgenode drain``: a running node moves its tasks with safe points to other executors, then stops."""

from __future__ import annotations

import argparse
import asyncio
import time

from .. import wire
from ..identity import KEY_FILE, Identity
from ..reasons import Reason
from ..tasks import DrainDone, DrainOrder
from ._common import EXIT_OK, EXIT_REMOTE, add_home, home_of, print_json
from ._order import node_address, send_order

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "drain",
        help="drain a running node: move its running tasks with safe points away, then stop it",
        description="The node stops admitting tasks, checkpoints its running tasks with safe points at their "
                    "next safe point and hands them to other executors, then stops as on SIGTERM (edgenode run "
                    "exits 0, once the moved tasks have answered and the others have finished or been handed "
                    "back). Signed with the node's own key (--home), so only the node's operator can order it.",
    )
    add_home(p)
    p.add_argument("--node", default=None, metavar="MULTIADDR",
                   help="address of the node (default: its [net] listen port on this machine)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds to wait for the answer")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_drain)


def _drain(args: argparse.Namespace) -> int:
    home = home_of(args)
    node_key = Identity.load(home / KEY_FILE)
    addr = node_address(home, node_key, args.node)
    order = wire.seal(node_key, DrainOrder(int(time.time() * 1000)))
    done = asyncio.run(send_order(addr, order, DrainDone, args.timeout))
    if args.json:
        print_json({"draining": done.draining, "moving": list(done.moving), "reason": done.reason,
                    "detail": done.detail})
    elif done.draining:
        print(f"draining: {len(done.moving)} running task(s) with safe points moving to other executors; "
              "the node stops once they have answered")
    else:
        print(f"not draining: {done.detail}")
    if done.draining or done.reason == Reason.STOPPING:
        return EXIT_OK  # (already) on its way down
    return EXIT_REMOTE
