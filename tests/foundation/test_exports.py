"""Every public package declares ``__all__`` and every name in it exists."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

ROOTS = ["edgenode", "ledger", "federated", "simnet"]


def _packages() -> list[str]:
    names: list[str] = []
    for root in ROOTS:
        mod = importlib.import_module(root)
        names.append(root)
        for info in pkgutil.walk_packages(mod.__path__, prefix=f"{root}."):
            leaf = info.name.rsplit(".", 1)[-1]
            if info.ispkg and not leaf.startswith("_") and ".app" not in info.name:
                names.append(info.name)
    return names


@pytest.mark.parametrize("name", _packages())
def test_all_names_exist(name: str) -> None:
    mod: ModuleType = importlib.import_module(name)
    public = getattr(mod, "__all__", None)
    assert public is not None, f"{name} has no __all__"
    missing = [n for n in public if not hasattr(mod, n)]
    assert not missing, f"{name}.__all__ names missing attributes: {missing}"
    assert len(set(public)) == len(public), f"{name}.__all__ has duplicates"
