"""``edgenode swarm create|admit|revoke|show``: swarm admin tools.

The admin key lives in ``<home>/swarm-admin.key`` and a JSON log of issued
certificates in ``<home>/swarm-issued.json`` (serials are never reused).
Certificates and revocations are written as files that a member installs
(``<member home>/swarm.cert``) or a node gossips.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import LocalError
from ..identity import Identity, public_key_from_peer_id
from ..security import ROLES, issue_certificate, issue_revocation, push_revocations, read_sealed_list
from ..tasks import SystemClock
from ._common import EXIT_OK, add_home, home_of, print_json

__all__ = ["register", "cmd_push", "read_revocations", "ADMIN_KEY", "ISSUED_LOG", "MEMBER_CERT"]

ADMIN_KEY = "swarm-admin.key"
ISSUED_LOG = "swarm-issued.json"
MEMBER_CERT = "swarm.cert"
"""Where a member node keeps its certificate inside its home."""

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration_ms(text: str) -> int:
    try:
        unit = _UNITS.get(text[-1], 1)
        number = float(text[:-1] if text[-1] in _UNITS else text)
    except (ValueError, IndexError) as exc:
        raise LocalError(f"bad duration {text!r}; use e.g. 30d, 12h, 90m, 3600s") from exc
    if number <= 0:
        raise LocalError("duration must be positive")
    return int(number * unit * 1000)


def register(sub: Any) -> None:
    p = sub.add_parser("swarm", help="create a swarm, admit and revoke members")
    ss = p.add_subparsers(dest="swarm_command", metavar="ACTION", required=True)

    c = ss.add_parser("create", help="create the swarm admin key")
    add_home(c)
    c.add_argument("--force", action="store_true", help="replace an existing admin key")
    c.set_defaults(func=cmd_create)

    a = ss.add_parser("admit", help="issue a signed membership certificate for PEER_ID")
    add_home(a)
    a.add_argument("peer_id")
    a.add_argument("--role", action="append", choices=ROLES, help="role to grant (repeatable; default executor)")
    a.add_argument("--expires", default="365d", help="validity, e.g. 30d, 12h (default 365d)")
    a.add_argument("--out", type=Path, help="certificate file (default ./PEER_ID.cert)")
    a.set_defaults(func=cmd_admit)

    r = ss.add_parser("revoke", help="issue a revocation of PEER_ID's certificates")
    add_home(r)
    r.add_argument("peer_id")
    r.add_argument("--reason", default="")
    r.add_argument("--out", type=Path, help="revocation file (default ./PEER_ID.revoke)")
    r.set_defaults(func=cmd_revoke)

    pu = ss.add_parser("push", help="deliver a revocation file to running node(s); it spreads by gossip")
    pu.add_argument("file", type=Path, metavar="FILE.revoke")
    pu.add_argument("--bootstrap", nargs="+", action="extend", required=True, metavar="MULTIADDR",
                    help="node(s) of the swarm to deliver it to")
    pu.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0", metavar="MULTIADDR")
    pu.set_defaults(func=cmd_push)

    s = ss.add_parser("show", help="print the swarm id and the certificates issued")
    add_home(s)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)


def _admin(home: Path) -> Identity:
    path = home / ADMIN_KEY
    if not path.exists():
        raise LocalError(f"no swarm admin key at {path}; run `edgenode swarm create --home {home}` first")
    return Identity.load(path)


def _issued(home: Path) -> list[dict[str, Any]]:
    path = home / ISSUED_LOG
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LocalError(f"{path} is corrupt: {exc}") from exc
    if not isinstance(data, list):
        raise LocalError(f"{path} is corrupt: expected a list")
    return data


def _save_issued(home: Path, issued: list[dict[str, Any]]) -> None:
    path = home / ISSUED_LOG
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(issued, indent=1))
    tmp.replace(path)


def cmd_create(args: argparse.Namespace) -> int:
    home = home_of(args)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    admin = Identity.generate()
    admin.save(home / ADMIN_KEY, force=args.force)
    print(f"swarm id {admin.peer_id}")
    print(f"admin key {home / ADMIN_KEY} (keep it offline; it admits and revokes members)")
    return EXIT_OK


def cmd_admit(args: argparse.Namespace) -> int:
    home = home_of(args)
    admin = _admin(home)
    member = public_key_from_peer_id(args.peer_id)
    roles = tuple(args.role or ["executor"])
    now = SystemClock().now_ms()
    issued = _issued(home)
    serial = 1 + max((int(e["serial"]) for e in issued), default=0)
    expires = now + _duration_ms(args.expires)
    sealed = issue_certificate(admin, member, roles, serial=serial, now_ms=now, expires_ms=expires)
    out: Path = args.out or Path(f"{args.peer_id}.cert")
    out.write_bytes(sealed)
    issued.append({"serial": serial, "peer_id": args.peer_id, "roles": list(roles), "expires_ms": expires})
    _save_issued(home, issued)
    print(f"certificate serial {serial} for {args.peer_id} roles {','.join(roles)} written to {out}")
    print(f"install it as <member home>/{MEMBER_CERT}")
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    home = home_of(args)
    admin = _admin(home)
    member = public_key_from_peer_id(args.peer_id)
    issued = _issued(home)
    serials = [int(e["serial"]) for e in issued if e["peer_id"] == args.peer_id and not e.get("revoked")]
    if not serials:
        raise LocalError(f"no unrevoked certificate issued to {args.peer_id}")
    now = SystemClock().now_ms()
    out: Path = args.out or Path(f"{args.peer_id}.revoke")
    blobs = [issue_revocation(admin, member, s, now_ms=now, reason=args.reason) for s in serials]
    out.write_bytes(b"".join(len(b).to_bytes(4, "big") + b for b in blobs))
    for e in issued:
        if e["peer_id"] == args.peer_id:
            e["revoked"] = True
    _save_issued(home, issued)
    print(f"revoked serial(s) {serials} of {args.peer_id}; revocation written to {out}")
    print("hand it to any node of the swarm (config [swarm] revocations) and it spreads by gossip")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    home = home_of(args)
    admin = _admin(home)
    issued = _issued(home)
    if args.json:
        print_json({"swarm_id": admin.peer_id, "issued": issued})
    else:
        print(f"swarm id {admin.peer_id}")
        for e in issued:
            state = "revoked" if e.get("revoked") else "valid"
            print(f"  serial {e['serial']}: {e['peer_id']} {','.join(e['roles'])} {state}")
    return EXIT_OK


def read_revocations(path: Path) -> list[bytes]:
    """Split a revocation file written by ``swarm revoke`` into sealed revocations."""
    return read_sealed_list(path)


def cmd_push(args: argparse.Namespace) -> int:
    """Deliver the revocations in a file to each bootstrap node (:func:`edgenode.security.push_revocations`)."""
    import asyncio

    revocations = read_revocations(args.file)
    return asyncio.run(_push(revocations, list(args.bootstrap), args.listen))


async def _push(revocations: list[bytes], bootstrap: list[str], listen: str) -> int:
    from ..net.p2p import P2PTransport

    transport = P2PTransport(Identity.generate(), listen=[listen])
    await transport.start()
    try:
        deliveries = await push_revocations(transport, bootstrap, revocations)
    finally:
        await transport.stop()
    for d in deliveries:
        if d.error is None:
            print(f"delivered {d.delivered} revocation(s) to {d.peer}")
        else:
            print(f"cannot deliver to {d.addr}: {d.error}")
    if not sum(d.delivered for d in deliveries):
        raise LocalError("no node took the revocation")
    return EXIT_OK
