"""A digits classifier trained from scikit-learn's bundled ``load_digits`` and exported to ONNX.

Nothing is downloaded. The model takes ``x: float32[N, 64]`` (pixels scaled to 0..1, i.e.
the 0..16 values divided by 16) and returns ``probs: float32[N, 10]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from federated.errors import FederatedLocalError
from federated.models import ONNX_INPUT, ONNX_OUTPUT, weights_to_onnx_bytes

__all__ = ["digits_dataset", "export_mlp_onnx", "train_digits_weights", "train_digits_model", "INPUT", "OUTPUT"]

INPUT = ONNX_INPUT
"""Name of the model's input."""
OUTPUT = ONNX_OUTPUT
"""Name of the model's output."""


def digits_dataset() -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``: X float32[1797, 64] in 0..1, y int64[1797]."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y.astype(np.int64)


def export_mlp_onnx(weights: Sequence[np.ndarray], *, name: str = "mlp") -> bytes:
    """ONNX bytes of a dense network ``[W1, b1, W2, b2, ...]`` (W: in x out), ReLU between layers, softmax out.

    The export path of federated models (:func:`federated.weights_to_onnx_bytes`); weights
    that are not ``W, b`` pairs raise :class:`ValueError`.
    """
    try:
        return weights_to_onnx_bytes(weights, name=name)
    except FederatedLocalError as exc:
        raise ValueError(str(exc)) from exc


def train_digits_weights(*, hidden: int = 32, seed: int = 0) -> list[np.ndarray]:
    """Train a small MLP (64-hidden-10) on all of ``load_digits``; returns ``[W1, b1, W2, b2]``."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x, y = digits_dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPClassifier(hidden_layer_sizes=(hidden,), max_iter=200, random_state=seed).fit(x, y)
    return [mlp.coefs_[0], mlp.intercepts_[0], mlp.coefs_[1], mlp.intercepts_[1]]


def train_digits_model(path: Path, *, hidden: int = 32, seed: int = 0) -> str:
    """Train the digits model, write it as ONNX to ``path``, return the sha256 hex of the file."""
    import hashlib

    data = export_mlp_onnx(train_digits_weights(hidden=hidden, seed=seed), name="digits")
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()
