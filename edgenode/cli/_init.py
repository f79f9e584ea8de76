"""``edgenode init`` and ``edgenode id``."""

from __future__ import annotations

import argparse
from typing import Any

from ..config import CONFIG_FILE, CONFIG_TEMPLATE
from ..errors import LocalError
from ..identity import KEY_FILE, Identity
from ._common import EXIT_OK, add_home, home_of, print_json

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser("init", help="create the node key and a commented config.toml")
    add_home(p)
    p.add_argument("--force", action="store_true", help="replace an existing key (the old identity is lost)")
    p.set_defaults(func=cmd_init)
    p = sub.add_parser("id", help="print the node's peer id")
    add_home(p)
    p.add_argument("--json", action="store_true", help="print peer id and public key as JSON")
    p.set_defaults(func=cmd_id)


def cmd_init(args: argparse.Namespace) -> int:
    home = home_of(args)
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise LocalError(f"cannot create {home}: {exc.strerror}") from exc
    ident = Identity.generate()
    ident.save(home / KEY_FILE, force=args.force)
    cfg = home / CONFIG_FILE
    if not cfg.exists():
        cfg.write_text(CONFIG_TEMPLATE)
    print(f"initialised {home}")
    print(f"peer id {ident.peer_id}")
    return EXIT_OK


def cmd_id(args: argparse.Namespace) -> int:
    ident = Identity.load(home_of(args) / KEY_FILE)
    if args.json:
        print_json({"peer_id": ident.peer_id, "public_key": ident.public_key.hex()})
    else:
        print(ident.peer_id)
    return EXIT_OK
