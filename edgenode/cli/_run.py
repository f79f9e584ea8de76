"""``edgenode run``: the node process (libp2p, SQLite ledger, sandbox, model registry)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger import LEDGER_DB, LedgerError, SqliteLedgerStore

from ..config import NodeConfig, load_config
from ..errors import LocalError
from ..identity import KEY_FILE, Identity
from ..inference import ModelRegistry
from ..metrics import setup_json_logging
from ..net.p2p import P2PConfig, P2PTransport
from ..protocol import TASK_PROTOCOL
from ..runtime import build_runtime
from ..sandbox import Sandbox
from ..security import load_guard
from ..tasks import REPLAY_DB, RegistryEngine, SqliteReplayStore, SystemClock
from ._common import EXIT_ERROR, EXIT_OK, add_home, home_of

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run a node of the swarm until SIGTERM/SIGINT")
    add_home(p)
    p.add_argument("--listen", action="append", metavar="MULTIADDR",
                   help="address to listen on (repeatable; default from config.toml)")
    p.add_argument("--bootstrap", nargs="+", action="extend", default=None, metavar="MULTIADDR",
                   help="peers to dial at start (with /p2p/PEER_ID)")
    p.add_argument("--metrics-port", type=int, default=None, metavar="N",
                   help="serve Prometheus metrics on 127.0.0.1:N (0: off)")
    p.add_argument("--relay", action="store_true",
                   help="serve as a circuit relay for nodes behind NATs (limits: [net] relay_*)")
    p.add_argument("--slots", type=int, default=None, help="tasks run at once (default from config.toml)")
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    p.add_argument("--dashboard-port", type=int, default=None, metavar="N",
                   help="serve the live dashboard page on 127.0.0.1:N (0: any free port; default: off)")
    p.add_argument("--dashboard-host", default="127.0.0.1", metavar="ADDR",
                   help="address of the dashboard page (anything but loopback needs a token in swarm mode)")
    p.add_argument("--dashboard-token-file", type=Path, default=None, metavar="FILE",
                   help="a token the dashboard's API requires (or $EDGENODE_DASHBOARD_TOKEN)")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    code = asyncio.run(_run(args))
    # Everything is flushed and closed by now.  Leave without interpreter finalisation:
    # wasmtime's WASI tokio worker threads abort the process (SIGABRT) when torn down there.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def _run(args: argparse.Namespace) -> int:
    home = home_of(args)
    ident = Identity.load(home / KEY_FILE)
    cfg = load_config(home)
    net = cfg.net
    if args.listen:
        net = dataclasses.replace(net, listen=tuple(args.listen))
    if args.bootstrap is not None:
        net = dataclasses.replace(net, bootstrap=tuple(args.bootstrap))
    if getattr(args, "relay", False):
        net = dataclasses.replace(net, relay=True)
    nodesec = cfg.node
    if args.metrics_port is not None:
        nodesec = dataclasses.replace(nodesec, metrics_port=args.metrics_port)
    if args.slots is not None:
        nodesec = dataclasses.replace(nodesec, slots=args.slots)
    cfg = dataclasses.replace(cfg, net=net, node=nodesec)
    # before anything opens: fail fast
    guard = load_guard(ident, home, cfg.swarm, SystemClock(), tables=cfg.tables)
    dash_token = None
    if args.dashboard_port is not None:
        from ..dashboard import check_bind
        from ._dashboard import read_token

        dash_token = read_token(args.dashboard_token_file)
        check_bind(args.dashboard_host, swarm_mode=guard is not None, token=dash_token)
    setup_json_logging(30 if args.quiet else 20)
    logging.getLogger("libp2p").setLevel(logging.WARNING)
    try:
        store = await SqliteLedgerStore.open(home / LEDGER_DB)
    except LedgerError as exc:
        raise LocalError(f"cannot open the ledger: {exc}") from exc
    try:
        replay = await SqliteReplayStore.open(home / REPLAY_DB)
    except LocalError:
        await store.close()
        raise
    registry = ModelRegistry(home / "models")
    sandbox = Sandbox(dataclasses.replace(cfg.sandbox, cache_dir=home / (cfg.sandbox.cache_dir or "cache")),
                      models=registry)
    transport = P2PTransport(ident, listen=list(net.listen), bootstrap=list(net.bootstrap),
                             mdns=net.mdns, quic=net.transport == "quic",
                             config=p2p_config(cfg, guard.swarm_id if guard is not None else ""),
                             gate=member_gate(guard) if guard is not None else None,
                             namespace=guard.swarm_id if guard is not None else "")
    runtime = build_runtime(ident, cfg, transport, store, sandbox=sandbox, registry=RegistryEngine(registry),
                            models=registry, guard=guard, replay_store=replay)
    dashboard: Any = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        # the node, then the FL controller (idles until a signed fl.start; answers "disabled" when off)
        await runtime.start()
        print(f"peer id {ident.peer_id}")
        if guard is not None:
            print(f"swarm {guard.swarm_id} member roles {','.join(guard.me.roles)}")
        for addr in transport.listen_addrs:
            print(f"listening {addr}")
        if runtime.node.metrics.port is not None:
            print(f"metrics http://127.0.0.1:{runtime.node.metrics.port}/metrics")
        if args.dashboard_port is not None:
            from ..dashboard import NodeDashboard

            dashboard = await NodeDashboard.start(runtime, args.dashboard_host, args.dashboard_port, dash_token)
            print(f"dashboard {dashboard.url}")
        sys.stdout.flush()
        waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(runtime.wait())}
        _done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in pending:
            w.cancel()
    finally:
        if dashboard is not None:
            await dashboard.stop()
        with contextlib.suppress(RuntimeError):
            await runtime.stop()
        sandbox.close()
    return EXIT_OK if runtime.failure is None else EXIT_ERROR


def p2p_config(cfg: NodeConfig, swarm_id: str = "") -> P2PConfig:
    """The libp2p transport's bounds from ``[net]`` (and a task spec's from ``[tables] spec_max_bytes``);
    in swarm mode (``swarm_id``) the DHT speaks the swarm's own protocol id."""
    net = cfg.net
    limits = dict(P2PConfig().request_limits)
    limits[TASK_PROTOCOL] = cfg.tables.spec_max_bytes + (64 << 10)  # the envelope around the spec
    return P2PConfig(
        max_inflight_per_peer=net.max_inflight_per_peer,
        max_concurrent_per_channel=net.max_concurrent_per_channel,
        max_inbound_streams_per_peer=net.max_inbound_streams_per_peer,
        default_request_bytes=net.max_request_bytes,
        request_limits=tuple(sorted(limits.items())),
        dht=net.dht,
        dht_protocol=f"/edgenode/{swarm_id}/kad/1.0.0" if swarm_id else P2PConfig().dht_protocol,
        nat_traversal=net.nat_traversal,
        holepunch=net.nat_traversal,
        relay_hop=net.relay,
        relay_max_reservations=net.relay_max_reservations,
        relay_max_circuits=net.relay_max_circuits,
        relay_max_bytes=net.relay_max_bytes,
        relay_max_duration=net.relay_max_duration_s,
        peer_exchange=net.peer_exchange,
        px_peers=net.px_peers,
    )


def member_gate(guard: Any) -> Callable[[str], bool]:
    """Swarm mode: only members with a valid certificate use this node's relay and DHT (runs in the
    network thread: a lookup of what the guard already checked, no handshake)."""
    from ..security import Refused

    def gate(peer: str) -> bool:
        try:
            guard.check_known(peer)
        except Refused:
            return False
        return True

    return gate
