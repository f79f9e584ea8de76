"""Make ``import simnet`` find the package, not this test folder.

``tests/`` is on ``sys.path`` (rootdir-style test imports) and the package is
installed in editable mode through a meta-path finder that runs after the path
finder, so ``tests/simnet/`` would otherwise be imported as a namespace package
called ``simnet``.  Putting the repository root first makes the real package win.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if sys.path[:1] != [_ROOT]:
    sys.path.insert(0, _ROOT)
