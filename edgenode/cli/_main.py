"""``edgenode`` entry point: builds the parser from the command modules."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
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
    "edgenode.cli._migrate",
    "edgenode.cli._drain",
    "edgenode.cli._exec",
    "edgenode.cli._models",
    "edgenode.cli._ledger",
    "edgenode.cli._swarm",
    "edgenode.cli._fl",
    "edgenode.cli._dashboard",
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
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except BrokenPipeError:
        return _pipe_closed()
    except RemoteError as exc:
        return fail(str(exc), EXIT_REMOTE)
    except EdgenodeError as exc:
        return fail(str(exc), EXIT_ERROR)
    except KeyboardInterrupt:
        return 130
    return code


def _pipe_closed() -> int:
    """The reader of stdout went away (``edgenode ledger export | head -1``): exit quietly.

    As the Python docs recommend (signal module, "Note on SIGPIPE"): point stdout at devnull so
    that the interpreter's final flush does not raise again, and exit with 1 like Python does.
    """
    with contextlib.suppress(OSError, ValueError):  # stdout without a descriptor (captured in tests)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_ERROR
