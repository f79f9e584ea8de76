"""``simnet run|demo``: a swarm on one machine, with live progress and a report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from edgenode.errors import EdgenodeError

from ._driver import Progress, run_scenario
from ._errors import SimnetError
from ._report import RunResult, write_report
from ._scenario import TRANSPORTS, Scenario, default_scenario, load_scenario

__all__ = ["main", "build_parser", "run_with_progress"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INVARIANT = 8
"""The run finished but an invariant broke (a task lost or duplicated, a ledger that does not verify)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simnet", description="Run a simulated edgenode swarm on this machine.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--nodes", type=int, help="executor nodes (overrides [swarm] nodes)")
        p.add_argument("--transport", choices=TRANSPORTS, help="mem (in-process) or libp2p (real hosts on loopback)")
        p.add_argument("--seed", type=int, help="seed of every random choice")
        p.add_argument("--duration", type=float, help="seconds of workload")
        p.add_argument("--report", type=Path, help="report directory (default: a new temporary directory)")
        p.add_argument("--quiet", action="store_true", help="no live progress, only the summary")
        p.add_argument("--backend", choices=("process", "ray"), default="process",
                       help="where libp2p node groups run: worker processes here (default) or Ray actors "
                       "across a Ray cluster (real libp2p hosts; needs edgenode[ray])")
        p.add_argument("--ray-address", help="with --backend ray: the cluster's address HOST:PORT "
                       "(default: start a local Ray instance)")
        p.add_argument("--live", action="store_true", help="serve the live dashboard page while the run goes on")
        p.add_argument("--port", type=int, default=8080, help="the dashboard's port with --live (0: any free port)")
        p.add_argument("--host", default="127.0.0.1", help="the dashboard's address with --live (default 127.0.0.1)")
        p.add_argument("--hold", action="store_true", help="with --live: keep serving the page after the run "
                       "until interrupted")

    r = sub.add_parser("run", help="run a scenario file (or the demo scenario)")
    r.add_argument("scenario", nargs="?", type=Path, help="scenario TOML (default: the embedded demo scenario)")
    common(r)
    d = sub.add_parser("demo", help="a few dozen nodes, tasks, FL rounds and faults; writes a report")
    common(d)
    return parser


def _progress_table(p: Progress) -> object:
    from rich.table import Table

    t = Table(title=f"simnet: {p.phase}", show_header=False, min_width=60)
    t.add_column("what", style="bold")
    t.add_column("value")
    t.add_row("time", f"{p.t_s:5.1f} s / {p.duration_s:.0f} s")
    t.add_row(
        "tasks",
        f"{p.submitted} submitted, {p.completed} verified ({p.ok} ok), {p.in_flight} in flight, {p.gave_up} given up",
    )
    acc = "-" if p.fl_accuracy is None else f"{p.fl_accuracy:.3f}"
    t.add_row("federated", f"round {p.fl_round}, accuracy {acc}" if p.fl_enabled else "off")
    t.add_row("faults", "\n".join(p.faults[-6:]) or "-")
    if p.groups:
        more = f"\n... {len(p.groups) - 12} more" if len(p.groups) > 12 else ""
        t.add_row("groups", "\n".join(p.groups[:12]) + more)
    return t


def run_with_progress(
    scenario: Scenario, *, live: bool = True, backend_kind: str = "process", ray_address: str | None = None
) -> RunResult:
    """Build the backend for the scenario's transport and run it, showing progress with rich when ``live``.

    ``backend_kind`` ``ray`` runs the libp2p node groups as Ray actors (see ``make_backend``)."""
    from ._swarm import make_backend

    backend = make_backend(scenario, backend=backend_kind, ray_address=ray_address)
    if not live:
        return asyncio.run(run_scenario(scenario, backend))
    from rich.console import Console
    from rich.live import Live

    console = Console(stderr=True)
    last = [0.0]
    with Live(console=console, refresh_per_second=4, transient=False) as view:

        def on_progress(p: Progress) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.2 or p.phase in ("done", "draining"):
                last[0] = now
                view.update(_progress_table(p))  # type: ignore[arg-type]

        return asyncio.run(run_scenario(scenario, backend, on_progress=on_progress))


def _summary(res: RunResult, md: Path) -> str:
    rec = res.recorder
    lines = [f"simnet: {res.scenario}: {len(rec.tasks)} tasks, wall {res.elapsed_s:.1f} s"]
    for name in ("simnet.tasks_ok", "simnet.tasks_lost", "simnet.tasks_duplicated", "simnet.throughput_per_s"):
        with contextlib.suppress(KeyError):
            lines.append(f"  {name} = {res.figure(name):g}")
    for f in res.figures:
        if f.name.startswith("simnet.task_latency_p") or f.name in (
            "simnet.fl_accuracy_centralized", "migrate.work_saved_ratio", "migrate.outputs_mismatched",
        ):
            extra = f" ({f.params['sla']})" if "sla" in f.params else ""
            lines.append(f"  {f.name}{extra} = {f.value:.3g} {f.unit}")
    if rec.fl_rounds:
        lines.append("  fl accuracy per round: " + ", ".join(f"{r['accuracy']:.3f}" for r in rec.fl_rounds))
    if rec.ledgers:
        ok = sum(1 for v in rec.ledgers.values() if v["verified"])
        lines.append(f"  ledgers verified: {ok}/{len(rec.ledgers)}, fork proofs: {rec.fork_proofs}")
    for note in res.notes:
        lines.append(f"  note: {note}")
    lines.append(f"invariants {'hold' if res.invariants_hold else 'BROKEN'}")
    lines.append(f"report: {md}")
    return "\n".join(lines)


def _cmd(args: argparse.Namespace) -> int:
    if args.command == "run" and args.scenario is not None:
        scenario = load_scenario(args.scenario)
    else:
        scenario = default_scenario()
    if args.backend == "ray" and (args.transport == "mem" or args.live):
        raise SimnetError("--backend ray runs real libp2p hosts: not with --transport mem, nor (yet) with --live")
    if args.ray_address is not None and args.backend != "ray":
        raise SimnetError("--ray-address goes with --backend ray")
    scenario = scenario.with_overrides(
        nodes=args.nodes, seed=args.seed, duration_s=args.duration,
        transport="libp2p" if args.backend == "ray" else args.transport,
    )  # fmt: skip
    report_dir: Path = args.report or Path(tempfile.mkdtemp(prefix=f"simnet-{scenario.swarm.name}-"))
    if args.live:
        from ._live import run_with_dashboard

        res = run_with_dashboard(scenario, host=args.host, port=args.port, hold=args.hold)
    else:
        res = run_with_progress(scenario, live=not args.quiet and sys.stderr.isatty(), backend_kind=args.backend,
                                ray_address=args.ray_address)
    md = write_report(res, report_dir)
    print(_summary(res, md))
    return EXIT_OK if res.invariants_hold else EXIT_INVARIANT


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return _cmd(args)
    except EdgenodeError as exc:
        print(f"simnet: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """The ``simnet`` command.  Called with ``argv`` (tests), it returns the exit code.

    Run as the program (``argv`` None), it ends the process with ``os._exit`` once the
    output is flushed: with onnxruntime and wasmtime both loaded, the interpreter's normal
    teardown sometimes aborts in wasmtime's runtime threads (exit status 134 after a
    successful run); skipping the teardown keeps the exit status the run's own.
    """
    code = _main(argv)
    if argv is None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
