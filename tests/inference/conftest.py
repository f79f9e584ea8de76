"""Fixtures for the inference tests: a trained digits model (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgenode.inference import ModelRegistry
from edgenode.inference.digits import export_mlp_onnx, train_digits_model


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("digits") / "digits.onnx"
    train_digits_model(path)
    return path


@pytest.fixture(scope="session")
def tiny_model() -> bytes:
    """A fixed 3-in 2-out dense model whose outputs are easy to compute by hand."""
    import numpy as np

    w = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    b = np.zeros(2, dtype=np.float32)
    return export_mlp_onnx([w, b], name="tiny")


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")
