"""Shared test configuration."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]

# Bounded property tests: CI gets more examples than a quick local run.
settings.register_profile("ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def migrate_wasm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``examples/tasks/migrate.c`` built for wasm32-wasi, once per session (skips without clang)."""
    spec = importlib.util.spec_from_file_location("edgenode_example_tasks_build", REPO / "examples/tasks/build.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    if not build.have_clang():
        pytest.skip("clang for wasm32-wasi is not installed (scripts/setup.sh)")
    return Path(build.build_c("migrate", tmp_path_factory.mktemp("migrate")))


@pytest.fixture(scope="session")
def migrate_wasm(migrate_wasm_path: Path) -> bytes:
    """The bytes of :func:`migrate_wasm_path`."""
    return migrate_wasm_path.read_bytes()
