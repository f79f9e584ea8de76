"""Numpy models: training works, weights round-trip, ONNX export predicts the same."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from federated import FederatedLocalError, TrainConfig, load_digits_split, make_model, to_onnx_bytes
from federated.models import ONNX_INPUT, export_onnx


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


@pytest.mark.parametrize(("name", "lr"), [("digits-logreg", 0.5), ("digits-mlp", 0.1)])
def test_training_reaches_centralised_accuracy(digits, name, lr):
    train, test = digits
    m = make_model(name, seed=1)
    _, acc0 = m.evaluate(test.x, test.y)
    m.fit(train.x, train.y, TrainConfig(epochs=30, learning_rate=lr), seed=1)
    loss, acc = m.evaluate(test.x, test.y)
    assert acc0 < 0.5
    assert acc >= 0.94
    assert loss < 0.4


@pytest.mark.parametrize("name", ["digits-logreg", "digits-mlp"])
def test_onnx_predictions_equal_numpy(digits, tmp_path, name):
    train, test = digits
    m = make_model(name, seed=2)
    m.fit(train.x, train.y, TrainConfig(epochs=3, learning_rate=0.1), seed=2)
    path = export_onnx(m, tmp_path / "m.onnx")
    assert path.read_bytes() == to_onnx_bytes(m)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs = sess.run(None, {ONNX_INPUT: test.x})[0]
    np.testing.assert_allclose(probs, m.predict_proba(test.x), rtol=1e-4, atol=1e-5)
    assert np.array_equal(probs.argmax(1), m.predict(test.x))


def test_weights_round_trip_and_shape_checks():
    a, b = make_model("digits-mlp", seed=0), make_model("digits-mlp", seed=5)
    assert not all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights(), strict=True))
    b.set_weights(a.get_weights())
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights(), strict=True))
    w = a.get_weights()
    w[0] = w[0][:, :3]
    with pytest.raises(FederatedLocalError):
        b.set_weights(w)
    w = a.get_weights()
    w[1][0] = np.nan
    with pytest.raises(FederatedLocalError):
        b.set_weights(w)
    with pytest.raises(FederatedLocalError):
        make_model("resnet")


def test_proximal_term_keeps_weights_near_anchor(digits):
    train, _ = digits
    anchor = make_model("digits").get_weights()
    far, near = make_model("digits"), make_model("digits")
    far.fit(train.x[:100], train.y[:100], TrainConfig(epochs=5), anchor=anchor)
    near.fit(train.x[:100], train.y[:100], TrainConfig(epochs=5, proximal_mu=1.0), anchor=anchor)

    def dist(m):
        return sum(float(np.linalg.norm(w - a)) for w, a in zip(m.get_weights(), anchor, strict=True))

    assert dist(near) < 0.5 * dist(far)
