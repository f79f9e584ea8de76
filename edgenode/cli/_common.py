"""What every ``edgenode`` sub-command shares: exit codes, output, home paths."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "EXIT_OK",
    "EXIT_ERROR",
    "EXIT_USAGE",
    "EXIT_REMOTE",
    "EXIT_UNREACHABLE",
    "EXIT_TASK_FAILED",
    "EXIT_NO_EXECUTOR",
    "EXIT_TIMEOUT",
    "ExitCodes",
    "exit_code_of",
    "run_mapped",
    "add_home",
    "home_of",
    "print_json",
    "fail",
]

EXIT_OK = 0
"""Success (for tasks: a verified ``ok`` result)."""
EXIT_ERROR = 1
"""A local error: bad input file, missing key, corrupt local state."""
EXIT_USAGE = 2
"""Bad command-line usage (argparse's own code)."""
EXIT_REMOTE = 3
"""Verification failed: a forged receipt or signature, a ledger that does not verify."""
EXIT_UNREACHABLE = 4
"""No peer could be reached (bootstrap unreachable)."""
EXIT_TASK_FAILED = 5
"""The task ran but its status is not ``ok`` (exit code, trap, limits)."""
EXIT_NO_EXECUTOR = 6
"""No node can or will take the task (no capable executor, all busy, offer unanswered)."""
EXIT_TIMEOUT = 7
"""The deadline passed or the spec expired before a result arrived."""


def add_home(p: argparse.ArgumentParser) -> None:
    """Add the ``--home DIR`` option (default ``~/.edgenode``)."""
    p.add_argument(
        "--home", type=Path, default=Path.home() / ".edgenode", help="node home directory (default ~/.edgenode)"
    )


def home_of(args: argparse.Namespace) -> Path:
    home: Path = args.home
    return home.expanduser()


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, sort_keys=True, default=str)
    sys.stdout.write("\n")


def fail(message: str, code: int = EXIT_ERROR) -> int:
    """Print a one-line error to stderr and return ``code``."""
    print(f"edgenode: error: {message}", file=sys.stderr)
    return code


ExitCodes = Sequence[tuple[type[Exception], int]]
"""(exception class, exit code) pairs; the first class that matches wins."""


def exit_code_of(exc: BaseException, codes: ExitCodes) -> int | None:
    """The exit code ``codes`` gives ``exc``, or None when no class in it matches."""
    return next((code for cls, code in codes if isinstance(exc, cls)), None)


def run_mapped(fn: Callable[[], int], codes: ExitCodes) -> int:
    """``fn()``; an exception of a class in ``codes`` becomes a one-line error and its exit code."""
    try:
        return fn()
    except tuple(cls for cls, _ in codes) as exc:
        return fail(str(exc), exit_code_of(exc, codes) or EXIT_ERROR)
