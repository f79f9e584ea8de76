"""``ledger`` knows nothing of ``edgenode`` or ``simnet`` (DESIGN.md, rule 1 of the house)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

LEDGER = Path(__file__).resolve().parents[2] / "ledger"
FORBIDDEN = ("edgenode", "simnet")


def _ledger_modules() -> list[str]:
    names = []
    for path in sorted(LEDGER.glob("*.py")):
        names.append("ledger" if path.stem == "__init__" else f"ledger.{path.stem}")
    return names


def test_ledger_does_not_import_edgenode_or_simnet() -> None:
    """Importing every ledger module in a fresh interpreter loads nothing of edgenode or simnet."""
    code = (
        f"import importlib, sys\nfor name in {_ledger_modules()!r}:\n    importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_ledger_source_names_neither_edgenode_nor_simnet() -> None:
    """No import of them anywhere in ledger's source, lazy ones inside functions included."""
    found = []
    for path in sorted(LEDGER.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module]
            else:
                continue
            found += [f"{path.name}:{node.lineno} {t}" for t in targets if t.split(".")[0] in FORBIDDEN]
    assert not found, found
