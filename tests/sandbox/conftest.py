"""Fixtures for the sandbox tests: example tasks built once per session, a digits model, a sandbox."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from edgenode.inference import ModelRegistry
from edgenode.inference.digits import train_digits_model
from edgenode.sandbox import Sandbox, SandboxConfig

REPO = Path(__file__).resolve().parents[2]


def _build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("edgenode_example_tasks_build", REPO / "examples/tasks/build.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """name -> module bytes of every example task (C ones need Debian's clang for wasm32-wasi)."""
    build = _build_module()
    if not build.have_clang():
        pytest.skip("clang for wasm32-wasi is not installed (scripts/setup.sh installs it)")
    paths = build.build_all(tmp_path_factory.mktemp("tasks"))
    return {name: Path(p).read_bytes() for name, p in paths.items()}


@pytest.fixture(scope="session")
def digits_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("digits") / "digits.onnx"
    train_digits_model(path)
    return path


@pytest.fixture
def registry(tmp_path: Path, digits_onnx: Path) -> ModelRegistry:
    reg = ModelRegistry(tmp_path / "models")
    reg.add(digits_onnx)
    return reg


@pytest.fixture
def sandbox(tmp_path: Path, registry: ModelRegistry) -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(cache_dir=tmp_path / "cache"), models=registry) as sb:
        yield sb
