"""A digits classifier trained from scikit-learn's bundled ``load_digits`` and exported to ONNX.

Nothing is downloaded. The model takes ``x: float32[N, 64]`` (pixels scaled to 0..1, i.e.
the 0..16 values divided by 16) and returns ``probs: float32[N, 10]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["digits_dataset", "export_mlp_onnx", "train_digits_weights", "train_digits_model", "INPUT", "OUTPUT"]

INPUT = "x"
"""Name of the model's input."""
OUTPUT = "probs"
"""Name of the model's output."""


def digits_dataset() -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``: X float32[1797, 64] in 0..1, y int64[1797]."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y.astype(np.int64)


def export_mlp_onnx(weights: Sequence[np.ndarray], *, name: str = "mlp") -> bytes:
    """ONNX bytes of a dense network ``[W1, b1, W2, b2, ...]`` (W: in x out), ReLU between layers, softmax out.

    This is also the export path of federated models (numpy weights, as a Flower ArrayRecord carries).
    """
    if not weights or len(weights) % 2:
        raise ValueError("weights must be pairs [W, b, ...]")
    inits, nodes, cur = [], [], INPUT
    layers = len(weights) // 2
    for i in range(layers):
        w = np.asarray(weights[2 * i], dtype=np.float32)
        b = np.asarray(weights[2 * i + 1], dtype=np.float32)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"b{i}")]
        out = f"h{i}"
        nodes.append(helper.make_node("Gemm", [cur, f"W{i}", f"b{i}"], [out]))
        if i < layers - 1:
            nodes.append(helper.make_node("Relu", [out], [out + "r"]))
            out += "r"
        cur = out
    nodes.append(helper.make_node("Softmax", [cur], [OUTPUT], axis=1))
    n_in = int(np.asarray(weights[0]).shape[0])
    n_out = int(np.asarray(weights[-1]).shape[0])
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", n_out])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgenode")
    model.ir_version = 8  # loadable by the older onnxruntime builds of Jetson images
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


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
