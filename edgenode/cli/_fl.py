"""``edgenode fl``: federated learning.

* ``fl start``: gossip rounds with a Flower strategy.  With ``--bootstrap`` it joins a
  running swarm as a light peer, sends a signed start command (:mod:`edgenode.fl`)
  and prints the progress the nodes report per round.  Standalone it runs a local
  swarm of ``--nodes`` nodes over the in-memory network (``edgenode.net.memnet``),
  each a :class:`~edgenode.fl.FederatedService`, and prints progress per round.
* ``fl superlink`` / ``fl supernode`` / ``fl keygen`` / ``fl run``: Flower deployment
  mode (a real SuperLink and SuperNodes with TLS and SuperNode authentication).
* ``fl fleet``: all of deployment mode on loopback in one command (a demo and a check).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from federated import STRATEGIES, DigitsPartition, FederatedError, RoundConfig, RoundDone, StrategyConfig
from federated.deploy import (
    CONNECTION,
    FlowerFleet,
    FlowerResult,
    flwr_env,
    make_supernode_keys,
    make_tls,
    register_command,
    run_app,
    superlink_command,
    supernode_command,
    write_connection,
)
from federated.models import MODEL_FACTORIES, make_model, to_onnx_bytes

from ..errors import LocalError
from ._common import EXIT_ERROR, EXIT_OK, fail, print_json
from ._fl_swarm import add_swarm_options, start_on_swarm

__all__ = ["register"]


def register(sub: Any) -> None:
    fl = sub.add_parser("fl", help="federated learning: gossip rounds, or a Flower SuperLink/SuperNode deployment")
    fsub = fl.add_subparsers(dest="fl_command", metavar="FL_COMMAND")
    fl.set_defaults(func=lambda _args: (fl.print_help(sys.stderr), 2)[1])

    p = fsub.add_parser("start", help="run gossip FL rounds (standalone: a local swarm over memnet)")
    p.add_argument("--model", default="digits", choices=sorted(MODEL_FACTORIES))
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--strategy", default="fedavg", choices=STRATEGIES)
    p.add_argument("--nodes", type=int, default=10, help="nodes in the local swarm (default 10)")
    p.add_argument("--quorum", type=int, default=0, help="updates that close a round (default: all nodes)")
    p.add_argument("--round-timeout", type=float, default=30.0, help="seconds before a round closes anyway")
    p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet skew of the data split (smaller = more)")
    p.add_argument("--malicious", type=int, default=1, help="Byzantine updates Krum/Bulyan tolerate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-onnx", type=Path, help="write the final model as ONNX here")
    p.add_argument("--json", action="store_true", help="one JSON line per round")
    add_swarm_options(p)
    p.set_defaults(func=cmd_start)

    p = fsub.add_parser("superlink", help="run flower-superlink with TLS and SuperNode auth (foreground)")
    p.add_argument("--workdir", type=Path, required=True, help="certificates and FLWR_HOME live here")
    p.add_argument("--port", type=int, default=8000, help="the SuperLink's HTTPS port (default 8000)")
    p.add_argument("--host", default="127.0.0.1", help="name/IP put in the server certificate and connection")
    p.add_argument("--no-auth", action="store_true", help="accept any SuperNode (no registration)")
    p.set_defaults(func=cmd_superlink)

    p = fsub.add_parser("keygen", help="create a SuperNode key pair and register it with the SuperLink")
    p.add_argument("--workdir", type=Path, required=True, help="the SuperLink's workdir (for FLWR_HOME)")
    p.add_argument("--name", required=True, help="key file name, e.g. supernode-0")
    p.add_argument("--no-register", action="store_true", help="only write the keys")
    p.set_defaults(func=cmd_keygen)

    p = fsub.add_parser("supernode", help="run flower-supernode holding one data partition (foreground)")
    p.add_argument("--superlink", required=True, help="HOST:PORT of the SuperLink")
    p.add_argument("--ca", type=Path, required=True, help="the CA certificate (workdir/certs/ca.crt)")
    p.add_argument("--key", type=Path, help="the SuperNode's private key (from `fl keygen`)")
    p.add_argument("--partition", type=int, required=True)
    p.add_argument("--num-partitions", type=int, required=True)
    p.add_argument("--port", type=int, default=9094, help="this SuperNode's own runtime API port")
    p.set_defaults(func=cmd_supernode)

    p = fsub.add_parser("run", help="submit the edgenode Flower App and print its results")
    p.add_argument("--workdir", type=Path, required=True, help="the SuperLink's workdir (FLWR_HOME, results)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--strategy", default="fedavg", choices=["fedavg", "fedprox", "fedmedian", "fedadam", "trimmedavg"])
    p.add_argument("--model", default="digits", choices=sorted(MODEL_FACTORIES))
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_run)

    p = fsub.add_parser("fleet", help="SuperLink + N SuperNodes on loopback (TLS, auth), run, print, stop")
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--strategy", default="fedavg", choices=["fedavg", "fedprox", "fedmedian", "fedadam", "trimmedavg"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fleet)


def _quiet_flower() -> None:
    import flwr.common.logger  # noqa: F401  (flwr sets its logger's level on import: import first)

    logging.getLogger("flwr").setLevel(logging.WARNING)


def _print_round(ev: RoundDone, total: int, nodes: int, as_json: bool) -> None:
    if as_json:
        print_json({"round": ev.round, "accuracy": ev.accuracy, "loss": ev.loss, "updates": ev.updates,
                    "reason": ev.reason, "seconds": ev.finished_at - ev.started_at})
    else:
        print(f"round {ev.round + 1:3d}/{total}  accuracy {ev.accuracy:.4f}  loss {ev.loss:.4f}  "
              f"updates {ev.updates}/{nodes} ({ev.reason})", flush=True)


async def _local_swarm(args: argparse.Namespace) -> RoundDone:
    from ..fl import FederatedService
    from ..identity import Identity
    from ..net.memnet import MemNetwork

    n = args.nodes
    cfg = RoundConfig(
        quorum=args.quorum or n,
        round_timeout=args.round_timeout,
        max_rounds=args.rounds,
        strategy=StrategyConfig(args.strategy, num_malicious=args.malicious),
    )
    net = MemNetwork(seed=args.seed)
    ids = [Identity.generate() for _ in range(n)]
    nodes = [net.add_node(i) for i in ids]
    services = [
        FederatedService(
            t, ident, loader=DigitsPartition(k, n, alpha=args.alpha, seed=args.seed), model=args.model,
            rounds=cfg, seed=args.seed + k,
            on_round=(lambda ev: _print_round(ev, args.rounds, n, args.json)) if k == 0 else None,
        )
        for k, (ident, t) in enumerate(zip(ids, nodes, strict=True))
    ]
    for t in nodes:
        await t.start()
    try:
        for k in range(n):
            for d in (1, 3):
                if n > d:
                    await nodes[k].connect(nodes[(k + d) % n].listen_addrs[0])
        for s in services:
            s.open()
        await net.drain()
        histories = await asyncio.gather(*(s.run() for s in services))
    finally:
        for t in nodes:
            await t.stop()
    return histories[0][-1]


def cmd_start(args: argparse.Namespace) -> int:
    if args.nodes < 1 or args.rounds < 1:
        raise LocalError("--nodes and --rounds must be >= 1")
    if args.bootstrap:
        return start_on_swarm(args)
    _quiet_flower()
    try:
        last = asyncio.run(_local_swarm(args))
    except FederatedError as exc:
        return fail(str(exc))
    if args.save_onnx is not None:
        m = make_model(args.model)
        m.set_weights(last.weights)
        args.save_onnx.write_bytes(to_onnx_bytes(m))
        if not args.json:
            print(f"final model written to {args.save_onnx}")
    return EXIT_OK


def _exec(cmd: list[str], env: dict[str, str]) -> int:
    try:
        return subprocess.run(cmd, env=env, check=False).returncode
    except FileNotFoundError as exc:
        raise LocalError(f"{cmd[0]} not found: install flwr==1.42.0") from exc
    except KeyboardInterrupt:
        return 130


def cmd_superlink(args: argparse.Namespace) -> int:
    wd: Path = args.workdir.resolve()
    certs = wd / "certs"
    try:
        tls = make_tls(certs, hosts=(args.host, "localhost")) if not (certs / "ca.crt").exists() else None
    except OSError as exc:
        raise LocalError(f"cannot write certificates in {certs}: {exc}") from exc
    if tls is None:
        from federated.deploy import TlsFiles

        tls = TlsFiles(certs / "ca.crt", certs / "server.pem", certs / "server.key")
    write_connection(wd / "flwr-home", f"{args.host}:{args.port}", tls.ca_cert)
    print(f"CA certificate for SuperNodes: {tls.ca_cert}", flush=True)
    cmd = superlink_command(tls=tls, port=args.port, database=wd / "state.db", auth=not args.no_auth)
    if args.host != "127.0.0.1":
        cmd[cmd.index("--host") + 1] = "0.0.0.0"
    return _exec(cmd, flwr_env(wd / "flwr-home"))


def cmd_keygen(args: argparse.Namespace) -> int:
    wd: Path = args.workdir.resolve()
    keys = make_supernode_keys(wd / "keys", args.name)
    print(f"private key {keys.private}\npublic key  {keys.public}")
    if args.no_register:
        return EXIT_OK
    return _exec(register_command(keys.public, CONNECTION), flwr_env(wd / "flwr-home"))


def cmd_supernode(args: argparse.Namespace) -> int:
    cmd = supernode_command(superlink=args.superlink, ca_cert=args.ca.resolve(),
                            keys=None, port=args.port, partition=args.partition,
                            num_partitions=args.num_partitions)
    if args.key is not None:
        cmd += ["--auth-supernode-private-key", str(args.key.resolve())]
    return _exec(cmd, flwr_env(Path.home() / ".flwr"))


def _print_result(res: FlowerResult, as_json: bool) -> None:
    for r in res.rounds:
        if as_json:
            print_json(r)
        else:
            print(f"round {int(r['round']):3d}  accuracy {r['accuracy']:.4f}  loss {r['loss']:.4f}")
    if not as_json:
        print(f"done in {res.seconds:.1f} s")


def cmd_run(args: argparse.Namespace) -> int:
    wd: Path = args.workdir.resolve()
    try:
        res = run_app(flwr_env(wd / "flwr-home"), wd, rounds=args.rounds, strategy=args.strategy,
                      model=args.model, timeout=args.timeout)
    except FederatedError as exc:
        return fail(str(exc), EXIT_ERROR)
    _print_result(res, args.json)
    return EXIT_OK


def cmd_fleet(args: argparse.Namespace) -> int:
    try:
        with FlowerFleet(args.workdir.resolve(), num_nodes=args.nodes) as fleet:
            res = fleet.run(rounds=args.rounds, strategy=args.strategy)
    except FederatedError as exc:
        return fail(str(exc), EXIT_ERROR)
    _print_result(res, args.json)
    return EXIT_OK
