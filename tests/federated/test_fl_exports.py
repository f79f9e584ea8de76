"""The public surface of ``federated``: every name in ``__all__`` exists; no edgenode import."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

MODULES = ["federated", "federated.models", "federated.data", "federated.flower", "federated.rounds",
           "federated.sim", "federated.gossip", "federated.deploy", "federated.errors", "federated.flower_app"]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name):
    mod = importlib.import_module(name)
    assert mod.__all__
    for attr in mod.__all__:
        assert hasattr(mod, attr), f"{name}.{attr}"


def test_federated_does_not_import_edgenode_or_simnet():
    code = ("import sys, federated, federated.sim, federated.gossip, federated.deploy, federated.flower_app; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('edgenode', 'simnet')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
