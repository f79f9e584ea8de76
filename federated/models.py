"""Models that train on a small board without PyTorch: numpy dense networks.

:class:`DenseModel` is a stack of fully connected layers with ReLU between them
and softmax at the end; with no hidden layer it is multinomial logistic
regression.  Weights are a list ``[W0, b0, W1, b1, ...]`` of float32 arrays
(``W`` is ``in x out``), the same list a Flower ``ArrayRecord`` carries.
:func:`to_onnx_bytes` exports the same graph through ``onnx.helper`` so that
onnxruntime gives the same predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .errors import FederatedLocalError

__all__ = [
    "Weights",
    "TrainConfig",
    "DenseModel",
    "logistic_regression",
    "mlp",
    "MODEL_FACTORIES",
    "make_model",
    "to_onnx_bytes",
    "weights_to_onnx_bytes",
    "export_onnx",
    "ONNX_INPUT",
    "ONNX_OUTPUT",
]

Weights = list[npt.NDArray[np.float32]]
"""Model weights: ``[W0, b0, W1, b1, ...]`` as float32 arrays."""

ONNX_INPUT = "x"
"""Name of the exported model's input (float32, ``N x features``)."""
ONNX_OUTPUT = "probs"
"""Name of the exported model's output (float32 class probabilities, ``N x classes``)."""


@dataclass(frozen=True)
class TrainConfig:
    """How one node trains locally in one round."""

    epochs: int = 5
    """Passes over the local data per round."""
    batch_size: int = 32
    """Minibatch size for SGD."""
    learning_rate: float = 0.5
    """SGD step size."""
    l2: float = 1e-4
    """L2 weight decay on the weight matrices."""
    proximal_mu: float = 0.0
    """FedProx proximal term: adds ``mu * (w - w_global)`` to every gradient (0 disables it)."""


def _softmax(z: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: npt.NDArray[np.float32] = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return out


class DenseModel:
    """A dense network: ``layers=(64, 10)`` is logistic regression, ``(64, 32, 10)`` an MLP."""

    def __init__(self, layers: Sequence[int], *, seed: int = 0, name: str = "dense") -> None:
        if len(layers) < 2 or any(int(n) < 1 for n in layers):
            raise FederatedLocalError(f"layers must be >= 2 positive sizes, got {list(layers)}")
        self.layers = tuple(int(n) for n in layers)
        self.name = name
        rng = np.random.default_rng(seed)
        self._w: Weights = []
        for i, (n_in, n_out) in enumerate(zip(self.layers[:-1], self.layers[1:], strict=True)):
            if len(self.layers) == 2:
                w = np.zeros((n_in, n_out), np.float32)
            else:
                scale = np.sqrt(2.0 / n_in) if i < len(self.layers) - 2 else np.sqrt(1.0 / n_in)
                w = (rng.standard_normal((n_in, n_out)) * scale).astype(np.float32)
            self._w += [w, np.zeros(n_out, np.float32)]

    # -- weights ----------------------------------------------------------------
    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the weight arrays, in order."""
        return [tuple(w.shape) for w in self._w]

    @property
    def num_classes(self) -> int:
        return self.layers[-1]

    @property
    def num_features(self) -> int:
        return self.layers[0]

    def get_weights(self) -> Weights:
        """A copy of the weights."""
        return [w.copy() for w in self._w]

    def set_weights(self, weights: Sequence[npt.NDArray[np.generic]]) -> None:
        """Replace the weights; shapes must match :attr:`shapes`."""
        got = [tuple(np.shape(w)) for w in weights]
        if got != self.shapes:
            raise FederatedLocalError(f"weights have shapes {got}, model {self.name} needs {self.shapes}")
        arrs = [np.asarray(w, dtype=np.float32).copy() for w in weights]
        if not all(np.isfinite(a).all() for a in arrs):
            raise FederatedLocalError("weights contain NaN or infinity")
        self._w = arrs

    # -- inference --------------------------------------------------------------
    def _forward(self, x: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        acts = [x]
        h = x
        n = len(self._w) // 2
        for i in range(n):
            h = (h @ self._w[2 * i] + self._w[2 * i + 1]).astype(np.float32)
            if i < n - 1:
                h = np.maximum(h, 0)
            acts.append(h)
        return acts

    def predict_proba(self, x: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Class probabilities, ``N x classes``."""
        return _softmax(self._forward(np.asarray(x, np.float32))[-1])

    def predict(self, x: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Predicted class per row."""
        out: npt.NDArray[np.int64] = self.predict_proba(x).argmax(axis=1).astype(np.int64)
        return out

    def evaluate(self, x: npt.ArrayLike, y: npt.ArrayLike) -> tuple[float, float]:
        """``(cross-entropy loss, accuracy)`` on ``(x, y)``."""
        yy = np.asarray(y, np.int64)
        if len(yy) == 0:
            raise FederatedLocalError("cannot evaluate on an empty data set")
        p = self.predict_proba(x)
        loss = float(-np.mean(np.log(np.clip(p[np.arange(len(yy)), yy], 1e-12, 1.0))))
        acc = float(np.mean(p.argmax(axis=1) == yy))
        return loss, acc

    # -- training ---------------------------------------------------------------
    def fit(
        self,
        x: npt.ArrayLike,
        y: npt.ArrayLike,
        config: TrainConfig = TrainConfig(),
        *,
        seed: int = 0,
        anchor: Sequence[npt.NDArray[np.float32]] | None = None,
    ) -> float:
        """Minibatch SGD on ``(x, y)``; returns the mean training loss of the last epoch.

        ``anchor`` (the global weights of the round) with ``config.proximal_mu > 0``
        applies the FedProx proximal term.
        """
        xx = np.asarray(x, np.float32)
        yy = np.asarray(y, np.int64)
        if len(yy) == 0:
            return 0.0
        rng = np.random.default_rng(seed)
        ref = [np.asarray(a, np.float32) for a in anchor] if anchor is not None else None
        onehot = np.eye(self.num_classes, dtype=np.float32)[yy]
        last = 0.0
        n_layers = len(self._w) // 2
        for _ in range(config.epochs):
            order = rng.permutation(len(yy))
            losses = []
            for start in range(0, len(yy), config.batch_size):
                idx = order[start : start + config.batch_size]
                acts = self._forward(xx[idx])
                p = _softmax(acts[-1])
                losses.append(float(-np.mean(np.log(np.clip((p * onehot[idx]).sum(1), 1e-12, 1.0)))))
                delta = (p - onehot[idx]) / len(idx)
                grads: Weights = [np.zeros_like(w) for w in self._w]
                for i in range(n_layers - 1, -1, -1):
                    grads[2 * i] = (acts[i].T @ delta + config.l2 * self._w[2 * i]).astype(np.float32)
                    grads[2 * i + 1] = delta.sum(axis=0).astype(np.float32)
                    if i > 0:
                        delta = (delta @ self._w[2 * i].T) * (acts[i] > 0)
                if ref is not None and config.proximal_mu > 0:
                    grads = [g + config.proximal_mu * (w - r) for g, w, r in zip(grads, self._w, ref, strict=True)]
                step = config.learning_rate
                self._w = [(w - step * g).astype(np.float32) for w, g in zip(self._w, grads, strict=True)]
            last = float(np.mean(losses))
        return last


def logistic_regression(num_features: int = 64, num_classes: int = 10, *, seed: int = 0) -> DenseModel:
    """Multinomial logistic regression (zero-initialised)."""
    return DenseModel((num_features, num_classes), seed=seed, name="logreg")


def mlp(num_features: int = 64, hidden: int = 32, num_classes: int = 10, *, seed: int = 0) -> DenseModel:
    """A one-hidden-layer MLP with ReLU (He-initialised from ``seed``)."""
    return DenseModel((num_features, hidden, num_classes), seed=seed, name="mlp")


def _digits_logreg(seed: int) -> DenseModel:
    return logistic_regression(seed=seed)


def _digits_mlp(seed: int) -> DenseModel:
    return mlp(seed=seed)


MODEL_FACTORIES: dict[str, Callable[[int], DenseModel]] = {
    "digits": _digits_logreg,
    "digits-logreg": _digits_logreg,
    "digits-mlp": _digits_mlp,
}
"""Named models: ``digits`` (= ``digits-logreg``) and ``digits-mlp``, on 8x8 digits."""


def make_model(name: str, *, seed: int = 0) -> DenseModel:
    """A fresh model by name (see :data:`MODEL_FACTORIES`); unknown names raise."""
    try:
        factory = MODEL_FACTORIES[name]
    except KeyError:
        raise FederatedLocalError(f"unknown model {name!r}; known: {sorted(MODEL_FACTORIES)}") from None
    return factory(seed)


def weights_to_onnx_bytes(weights: Sequence[npt.ArrayLike], *, name: str = "mlp") -> bytes:
    """A dense network ``[W0, b0, W1, b1, ...]`` (``W``: in x out) as a serialised ONNX graph.

    Gemm per layer, ReLU between layers, softmax out (opset 17, IR 8); input :data:`ONNX_INPUT`
    ``float32[N, in]``, output :data:`ONNX_OUTPUT` ``float32[N, out]``. Weights that are not
    ``W, b`` pairs raise :class:`FederatedLocalError`.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if not weights or len(weights) % 2:
        raise FederatedLocalError("weights must be pairs [W, b, ...]")
    arrays = [np.asarray(w, dtype=np.float32) for w in weights]
    inits = []
    nodes = []
    cur = ONNX_INPUT
    n_layers = len(arrays) // 2
    for i in range(n_layers):
        inits.append(numpy_helper.from_array(arrays[2 * i], f"W{i}"))
        inits.append(numpy_helper.from_array(arrays[2 * i + 1], f"b{i}"))
        out = f"h{i}"
        nodes.append(helper.make_node("Gemm", [cur, f"W{i}", f"b{i}"], [out]))
        if i < n_layers - 1:
            nodes.append(helper.make_node("Relu", [out], [out + "_relu"]))
            out += "_relu"
        cur = out
    nodes.append(helper.make_node("Softmax", [cur], [ONNX_OUTPUT], axis=1))
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, ["N", int(arrays[0].shape[0])])],
        [helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.FLOAT, ["N", int(arrays[-1].shape[0])])],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgenode-federated")
    proto.ir_version = 8  # loadable by the older onnxruntime builds of Jetson images
    onnx.checker.check_model(proto)
    data: bytes = proto.SerializeToString()
    return data


def to_onnx_bytes(model: DenseModel) -> bytes:
    """The model as a serialised ONNX graph (see :func:`weights_to_onnx_bytes`)."""
    return weights_to_onnx_bytes(model.get_weights(), name=model.name)


def export_onnx(model: DenseModel, path: str | Path) -> Path:
    """Write the model as ONNX to ``path``; returns the path."""
    p = Path(path)
    p.write_bytes(to_onnx_bytes(model))
    return p
