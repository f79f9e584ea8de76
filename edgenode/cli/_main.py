"""``edgenode`` entry point: builds the parser from the command modules."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import EdgenodeError, RemoteError
from ._common import EXIT_ERROR, EXIT_REMOTE, fail

__all__ = ["main", "build_parser"]

# Each module defines ``register(subparsers)`` and sets ``func`` on its parsers.
_COMMAND_MODULES = (
    "edgenode.cli._init",
    "edgenode.cli._run",
    "edgenode.cli._submit",
    "edgenode.cli._exec",
    "edgenode.cli._models",
    "edgenode.cli._ledger",
    "edgenode.cli._swarm",
    "edgenode.cli._fl",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgenode", description="A peer of a decentralized edge-intelligence swarm.")
    parser.add_argument("--version", action="version", version=f"edgenode {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = args.func(args)
    except RemoteError as exc:
        return fail(str(exc), EXIT_REMOTE)
    except EdgenodeError as exc:
        return fail(str(exc), EXIT_ERROR)
    except KeyboardInterrupt:
        return 130
    return code
