"""``edgenode ledger show|verify|export``: read the node's ledger database (read-only)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import ledger
from ledger import LEDGER_DB, Entry, LedgerStore, MemoryLedgerStore, SqliteLedgerStore, VerifyReport

from ..errors import LocalError, RemoteError
from ..identity import KEY_FILE, peer_id_from_public_key
from ._common import EXIT_OK, EXIT_REMOTE, add_home, fail, home_of, print_json

__all__ = ["register", "LEDGER_DB", "entry_json"]

_CHUNK = 4096


def register(sub: Any) -> None:
    p = sub.add_parser("ledger", help="inspect the node's signed ledger")
    lsub = p.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)
    s = lsub.add_parser("show", help="summary of every chain held: author, length, head")
    add_home(s)
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_show)
    v = lsub.add_parser("verify", help="verify every chain; exit 3 naming the author, first bad seq and why")
    add_home(v)
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    v.set_defaults(func=cmd_verify)
    e = lsub.add_parser("export", help="write every entry as JSON lines (or one JSON array with --json)")
    add_home(e)
    e.add_argument("--json", action="store_true", help="one JSON array instead of JSON lines")
    e.add_argument("--no-body", action="store_true", help="leave bodies out")
    e.set_defaults(func=cmd_export)


def _peer(author: bytes) -> str:
    return peer_id_from_public_key(author)


def entry_json(entry: Entry, *, with_body: bool = True) -> dict[str, Any]:
    """One entry as a JSON-able dict (bytes as hex, author also as peer id)."""
    out: dict[str, Any] = {
        "author": _peer(entry.author),
        "author_key": entry.author.hex(),
        "seq": entry.seq,
        "hash": entry.hash.hex(),
        "prev": entry.prev.hex(),
        "timestamp_ms": entry.timestamp_ms,
        "kind": entry.kind,
        "body_hash": entry.body_hash.hex(),
        "signature": entry.signature.hex(),
    }
    if with_body:
        out["body"] = entry.body.hex() if entry.body is not None else None
    return out


def _run(args: argparse.Namespace, action: Callable[[LedgerStore], Awaitable[int]]) -> int:
    """Open the database read-only, run ``action``, translate ledger errors into edgenode's.

    An initialised home without a ledger database yet (no task recorded) holds an empty ledger,
    which is a valid one: ``action`` then runs on an empty store.
    """
    home = home_of(args)
    path = home / LEDGER_DB

    async def go() -> int:
        store: LedgerStore
        if not path.exists() and (home / KEY_FILE).is_file():
            store = MemoryLedgerStore()
        else:
            store = await SqliteLedgerStore.open(path, readonly=True)
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except ledger.LedgerRemoteError as exc:
        raise RemoteError(str(exc)) from exc
    except ledger.LedgerError as exc:
        raise LocalError(str(exc)) from exc


def cmd_show(args: argparse.Namespace) -> int:
    async def action(store: LedgerStore) -> int:
        rows: list[dict[str, Any]] = []
        for author, length in sorted((await store.lengths()).items()):
            row: dict[str, Any] = {"author": _peer(author), "length": length}
            try:
                head = await store.head(author)
            except ledger.CorruptRowError as exc:
                row.update(head=None, last_kind=None, last_timestamp_ms=None, problem=str(exc))
            else:
                assert head is not None
                row.update(head=head.hash.hex(), last_kind=head.kind, last_timestamp_ms=head.timestamp_ms)
            rows.append(row)
        forks = [{"author": _peer(p.author), "seq": p.seq} for p in await store.forks()]
        if args.json:
            print_json({"chains": rows, "forks": forks})
            return EXIT_OK
        if not rows and not forks:
            print(f"the ledger is empty ({home_of(args) / LEDGER_DB}: no entries yet)")
            return EXIT_OK
        print(f"{len(rows)} chain(s) in {home_of(args) / LEDGER_DB}")
        for r in rows:
            if r["head"] is None:
                print(f"{r['author']}  {r['length']:>8} entries  {r['problem']}")
            else:
                print(f"{r['author']}  {r['length']:>8} entries  head {r['head'][:16]}  last {r['last_kind']}")
        for f in forks:
            print(f"FORK {f['author']} at seq {f['seq']}")
        return EXIT_OK

    return _run(args, action)


def _report_json(report: VerifyReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "entries": report.entries,
        "integrity": list(report.integrity),
        "chains": [
            {
                "author": _peer(a.author),
                "ok": a.ok,
                "length": a.length,
                "verified": a.verified,
                "first_bad_seq": a.first_bad_seq,
                "reason": a.reason,
                "detail": a.detail,
            }
            for a in report.authors
        ],
    }


def cmd_verify(args: argparse.Namespace) -> int:
    async def action(store: LedgerStore) -> int:
        report = await ledger.verify_store(store)
        if args.json:
            print_json(_report_json(report))
        elif report.ok and report.entries == 0 and not report.authors:
            print("ok: the ledger is empty (0 entries)")
        elif report.ok:
            print(f"ok: {report.entries} entries in {len(report.authors)} chain(s) verify")
        for problem in report.integrity:
            fail(f"database integrity: {problem}", EXIT_REMOTE)
        for a in report.failures:
            why = f"{a.reason} ({a.detail})" if a.detail else str(a.reason)
            fail(f"chain of {_peer(a.author)} fails at seq {a.first_bad_seq}: {why}", EXIT_REMOTE)
        return EXIT_OK if report.ok else EXIT_REMOTE

    return _run(args, action)


async def _author_entries(store: LedgerStore, author: bytes, length: int) -> list[Entry]:
    """Every readable entry of ``author``; rows that cannot be rebuilt are skipped with a warning."""
    out: list[Entry] = []
    for start in range(1, length + 1, _CHUNK):
        end = min(start + _CHUNK - 1, length)
        try:
            out += await store.range(author, start, end)
        except ledger.CorruptRowError:
            for seq in range(start, end + 1):
                try:
                    entry = await store.get(author, seq)
                except ledger.CorruptRowError as exc:
                    print(f"edgenode: warning: skipped {exc}", file=sys.stderr)
                    continue
                if entry is not None:
                    out.append(entry)
    return out


def cmd_export(args: argparse.Namespace) -> int:
    async def action(store: LedgerStore) -> int:
        lengths = await store.lengths()
        items: list[dict[str, Any]] = []
        for author in sorted(lengths):
            for entry in await _author_entries(store, author, lengths[author]):
                item = entry_json(entry, with_body=not args.no_body)
                if args.json:
                    items.append(item)
                else:
                    print_json(item)
        if args.json:
            print_json(items)
        return EXIT_OK

    return _run(args, action)
