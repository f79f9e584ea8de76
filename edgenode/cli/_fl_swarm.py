"""``edgenode fl start --bootstrap ...``: start a federated run on a running swarm and follow it."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ..fl import FLStalled, NoFLNode, RoundSummary, launch, make_start
from ..net import Unreachable
from ..tasks import Submitter, SystemClock
from ._common import EXIT_NO_EXECUTOR, EXIT_OK, EXIT_TIMEOUT, EXIT_UNREACHABLE, ExitCodes, fail, print_json, run_mapped
from ._peer import add_peer_options, peer_session

__all__ = ["add_swarm_options", "start_on_swarm"]


def add_swarm_options(p: argparse.ArgumentParser) -> None:
    """The options of ``fl start`` that select and drive a running swarm."""
    g = p.add_argument_group("on a running swarm (with --bootstrap)")
    add_peer_options(g, required=False,
                     bootstrap_help="node(s) of a running swarm to join through; without it a local memnet swarm runs",
                     key_help="sign the start command with this key (default: ephemeral)",
                     cert_help="swarm membership certificate for the key (swarm mode; role trainer or admin)")
    g.add_argument("--ack-timeout", type=float, default=15.0, metavar="S",
                   help="seconds for a node to accept the run before giving up (exit 6)")
    g.add_argument("--start-delay", type=float, default=2.0, metavar="S",
                   help="round 0 starts this long after the command (nodes subscribe meanwhile)")


def _print(s: RoundSummary, run_id: str, as_json: bool) -> None:
    if as_json:
        print_json({"run_id": run_id, **s.as_json()})
    else:
        model = s.model_sha256[:12] if s.model_sha256 else "-"
        print(f"round {s.round + 1:3d}/{s.rounds}  accuracy {s.accuracy_mean:.4f} (median {s.accuracy_median:.4f}, "
              f"{s.nodes} nodes)  loss {s.loss_mean:.4f}  updates {s.updates_mean:.1f}  model {model}"
              + (f" ({s.models} distinct)" if s.models > 1 else ""), flush=True)


async def _start(args: argparse.Namespace) -> list[RoundSummary]:
    async def body(sub: Submitter) -> list[RoundSummary]:
        nodes = max(1, len(sub.adverts.live(sub.clock.now_ms())))
        start = make_start(model=args.model, rounds=args.rounds, strategy=args.strategy,
                           quorum=args.quorum or nodes, round_timeout_s=args.round_timeout,
                           malicious=args.malicious, now_ms=SystemClock().now_ms(),
                           start_delay_ms=int(args.start_delay * 1000))
        if not args.json:
            print(f"run {start.run_id}: {args.model} x {args.rounds} rounds, {args.strategy}, quorum {start.quorum}, "
                  f"{nodes} node(s) known", flush=True)
        return await launch(sub.transport, sub.signer, start, peers=sub.transport.peers(), expected=nodes,
                            ack_timeout=args.ack_timeout, on_round=lambda s: _print(s, start.run_id, args.json))

    return await peer_session(args, body)  # joins like `edgenode submit` (key, swarm certificate, bootstrap)


def start_on_swarm(args: argparse.Namespace) -> int:
    """``fl start --bootstrap``: exit 0 when every round was reported, 4/6/7 when unreachable/refused/stalled."""
    if args.save_onnx is not None:
        return fail("--save-onnx works only without --bootstrap (the nodes serve the model as 'digits')")
    codes: ExitCodes = ((Unreachable, EXIT_UNREACHABLE), (NoFLNode, EXIT_NO_EXECUTOR), (FLStalled, EXIT_TIMEOUT))

    def run() -> int:
        summaries = asyncio.run(_start(args))
        if not args.json and summaries:
            last: Any = summaries[-1]
            print(f"done: {len(summaries)} rounds reported, final mean accuracy {last.accuracy_mean:.4f}")
        return EXIT_OK

    return run_mapped(run, codes)
