"""``edgenode submit``, ``infer`` and ``status``: a light peer that places work and checks receipts."""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
from pathlib import Path
from typing import Any, TypeVar

from ..errors import LocalError
from ..net import Unreachable
from ..protocol import (
    KIND_INFER,
    KIND_WASM,
    InvalidReceipt,
    NoExecutor,
    NoMajority,
    SpecExpired,
    TaskLimits,
    TaskTimeout,
)
from ..scheduler import SLA_COST, SLA_LATENCY
from ..tasks import Submitter, TaskOutcome, TaskRequest
from ._common import (
    EXIT_NO_EXECUTOR,
    EXIT_OK,
    EXIT_REMOTE,
    EXIT_TASK_FAILED,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    ExitCodes,
    exit_code_of,
    fail,
    print_json,
    run_mapped,
)
from ._peer import add_peer_options, peer_session

__all__ = ["register", "outcome_json"]

T = TypeVar("T")


def _common(p: argparse.ArgumentParser) -> None:
    add_peer_options(p, required=True, bootstrap_help="node(s) of the swarm to join through",
                     key_help="sign with this key file (default: an ephemeral key)",
                     cert_help="swarm membership certificate for the key (swarm mode: payloads are encrypted)")
    p.add_argument("--json", action="store_true", help="print a JSON object (with the receipt and executor)")


def register(sub: Any) -> None:
    p = sub.add_parser("submit", help="run a WASM task on the swarm and print its verified output")
    p.add_argument("module", type=Path, metavar="MODULE.wasm")
    _common(p)
    p.add_argument("--stdin", type=Path, default=None, metavar="FILE", help="file given to the task as stdin")
    p.add_argument("--arg", action="append", default=[], metavar="A", help="task argument (repeatable)")
    p.add_argument("--fuel", type=int, default=TaskLimits.fuel, metavar="N")
    p.add_argument("--timeout-ms", type=int, default=TaskLimits.timeout_ms, metavar="N", help="run time limit")
    p.add_argument("--memory-mb", type=int, default=TaskLimits.memory_mb, metavar="N")
    p.add_argument("--deadline-ms", type=int, default=30_000, metavar="N", help="total time budget (spec expiry)")
    p.add_argument("--model", action="append", default=[], metavar="HASH", help="model the task may call")
    p.add_argument("--require", action="append", default=[], metavar="CAP", help="capability the executor needs")
    p.add_argument("--redundancy", type=int, default=1, metavar="k", help="run on k executors, majority wins")
    p.add_argument("--data-dir", action="append", default=[], metavar="NAME",
                   help="read-only data directory the task needs (swarm policy decides; mounted as /data)")
    p.add_argument("--ledger-payload", action="store_true",
                   help="ask the executor to keep the plaintext input and output in its ledger (default: hashes)")
    p.add_argument("--checkpoint-ms", type=int, default=0, metavar="N",
                   help="a task with safe points sends a snapshot here every N ms; if its executor dies, "
                        "the next one resumes from the latest (not with encryption)")
    p.add_argument("--sla", choices=(SLA_LATENCY, SLA_COST), default=SLA_LATENCY)
    p.add_argument("--market", action="store_true", help="ask for bids on the work topic (contract net)")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="submit N copies (distinct task ids), up to 32 at once; one line per result")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("infer", help="run a model on a tensor on the swarm")
    p.add_argument("model", metavar="MODEL_HASH")
    p.add_argument("--input", type=Path, required=True, metavar="FILE.npy")
    p.add_argument("--output", type=Path, default=None, metavar="FILE.npy", help="write the output tensor here")
    p.add_argument("--deadline-ms", type=int, default=30_000, metavar="N")
    _common(p)
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("status", help="list the swarm's nodes, their adverts and load")
    _common(p)
    p.set_defaults(func=cmd_status)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LocalError(f"cannot read {path}: {exc.strerror}") from exc


_EXIT_CODES: ExitCodes = (
    (Unreachable, EXIT_UNREACHABLE),
    (NoExecutor, EXIT_NO_EXECUTOR),
    (TaskTimeout, EXIT_TIMEOUT),
    (SpecExpired, EXIT_TIMEOUT),
    (InvalidReceipt, EXIT_REMOTE),
    (NoMajority, EXIT_REMOTE),
)


def outcome_json(out: TaskOutcome) -> dict[str, Any]:
    """The ``--json`` form of an outcome."""
    try:
        text: dict[str, str] = {"output": out.output.decode("utf-8")}
    except UnicodeDecodeError:
        text = {"output_b64": base64.b64encode(out.output).decode()}
    return {
        "task_id": out.task_id,
        "status": out.status,
        "exit_code": out.exit_code,
        **text,
        "stderr": out.stderr.decode("utf-8", "replace"),
        "executor": out.executor,
        "latency_ms": out.latency_ms,
        "attempts": out.attempts,
        "notes": list(out.notes),
        "disagreeing": [list(d) for d in out.disagreeing],
        "receipts": [
            {
                "executor": vr.executor,
                "entry_seq": vr.entry.seq,
                "entry_hash": vr.entry.hash.hex(),
                "prev_hash": vr.entry.prev.hex(),
                "spec_hash": vr.receipt.spec_hash,
                "output_hash": vr.receipt.output_hash,
                "fuel_used": vr.receipt.fuel_used,
                "wall_ms": vr.receipt.wall_ms,
                "receipt_b64": base64.b64encode(vr.sealed).decode(),
            }
            for vr in out.receipts
        ],
    }


def _emit(args: argparse.Namespace, out: TaskOutcome) -> None:
    if args.json:
        print_json(outcome_json(out))
    else:
        sys.stdout.buffer.write(out.output)
        sys.stdout.flush()
        if out.stderr:
            sys.stderr.buffer.write(out.stderr)


def cmd_submit(args: argparse.Namespace) -> int:
    module = _read(args.module)
    stdin = _read(args.stdin) if args.stdin else b""
    if args.redundancy < 1 or args.repeat < 1:
        raise LocalError("--redundancy and --repeat must be at least 1")
    limits = TaskLimits(fuel=args.fuel, timeout_ms=args.timeout_ms, memory_mb=args.memory_mb)

    async def body(sub: Submitter) -> list[TaskOutcome | BaseException]:
        h = sub.add_module(module)
        req = TaskRequest(KIND_WASM, h, stdin, tuple(args.arg), limits, tuple(args.require), tuple(args.model),
                          args.deadline_ms, args.redundancy, args.sla, args.market,
                          data_dirs=tuple(args.data_dir), ledger_payload=args.ledger_payload,
                          checkpoint_ms=max(0, args.checkpoint_ms))
        gate = asyncio.Semaphore(32)
        results: list[TaskOutcome | BaseException] = []

        async def one() -> None:
            async with gate:
                try:
                    out = await sub.submit(req)
                except Exception as exc:  # collected, then mapped to an exit code below
                    results.append(exc)
                    return
            results.append(out)
            if args.repeat > 1:
                _emit(args, out)  # stream results as they arrive

        await asyncio.gather(*(one() for _ in range(args.repeat)))
        return results

    def run() -> int:
        results = asyncio.run(peer_session(args, body))
        if len(results) == 1:
            res = results[0]
            if isinstance(res, BaseException):
                raise res
            _emit(args, res)
            if not res.ok:
                return fail(f"task ended with status {res.status} (exit code {res.exit_code})", EXIT_TASK_FAILED)
            return EXIT_OK
        code = EXIT_OK
        for res in results:
            if isinstance(res, BaseException):
                mapped = exit_code_of(res, _EXIT_CODES)
                if mapped is None:
                    raise res
                code = max(code, fail(str(res), mapped))
            elif not res.ok:
                code = max(code, EXIT_TASK_FAILED)
        return code

    return run_mapped(run, _EXIT_CODES)


def cmd_infer(args: argparse.Namespace) -> int:
    data = _read(args.input)

    async def body(sub: Submitter) -> TaskOutcome:
        return await sub.submit(TaskRequest(KIND_INFER, args.model, data, deadline_ms=args.deadline_ms))

    def run() -> int:
        out = asyncio.run(peer_session(args, body))
        if not out.ok:
            return fail(f"inference failed: {out.stderr.decode('utf-8', 'replace')}", EXIT_TASK_FAILED)
        if args.output:
            args.output.write_bytes(out.output)
        if args.json:
            from ..tasks import npy_load

            result = outcome_json(out)
            result.pop("output", None)
            result.pop("output_b64", None)
            arr = npy_load(out.output)
            result["shape"] = list(arr.shape)
            result["values"] = arr.tolist()
            print_json(result)
        elif not args.output:
            from ..tasks import npy_load

            print(npy_load(out.output))
        return EXIT_OK

    return run_mapped(run, _EXIT_CODES)


def _reach_of(capabilities: tuple[str, ...]) -> str:
    """What a node's advert says of its reachability (``reach:<verdict>``; older nodes: unknown)."""
    return next((c.split(":", 1)[1] for c in capabilities if c.startswith("reach:")), "unknown")


def cmd_status(args: argparse.Namespace) -> int:
    async def body(sub: Submitter) -> tuple[list[Any], dict[str, str], str]:
        ads = await sub.status()
        return ads, await sub.transport.connection_kinds(), sub.transport.reachability

    def run() -> int:
        ads, kinds, own_reach = asyncio.run(peer_session(args, body))
        rows = [
            {
                "peer_id": a.peer_id, "addrs": list(a.addrs), "capabilities": list(a.capabilities),
                "slots": a.slots, "free_slots": a.free_slots, "queue_len": a.queue_len, "queue_cap": a.queue_cap,
                "cost_class": a.cost_class, "version": a.version,
                "connection": kinds.get(a.peer_id, "none"), "reachability": _reach_of(a.capabilities),
            }
            for a in ads
        ]
        if args.json:
            print_json({"peers": rows, "self": {"reachability": own_reach, "connections": kinds}})
        else:
            for r in rows:
                load = f"{r['slots'] - r['free_slots']}/{r['slots']} running, {r['queue_len']} queued"
                print(f"{r['peer_id']}  {load}  cost={r['cost_class']}  conn={r['connection']}  "
                      f"reach={r['reachability']}  caps={','.join(r['capabilities'])}")
            print(f"{len(rows)} node(s); this peer: reachability {own_reach}, "
                  f"{len(kinds)} connection(s) ({', '.join(f'{p[:12]} {k}' for p, k in sorted(kinds.items()))})")
        return EXIT_OK

    return run_mapped(run, _EXIT_CODES)
