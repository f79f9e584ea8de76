"""The model registry over real onnxruntime sessions."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import pytest

from edgenode.errors import RemoteError
from edgenode.inference import (
    InferenceInputError,
    InvalidModel,
    ModelRegistry,
    UnknownModel,
)
from edgenode.inference.digits import digits_dataset, export_mlp_onnx, train_digits_weights


def test_add_is_content_addressed(registry: ModelRegistry, digits_model: Path) -> None:
    h = registry.add(digits_model)
    assert h == hashlib.sha256(digits_model.read_bytes()).hexdigest()
    assert registry.add(digits_model.read_bytes()) == h
    assert registry.hashes() == [h]
    assert registry.path(h).read_bytes() == digits_model.read_bytes()


def test_signature_is_reported(registry: ModelRegistry, digits_model: Path) -> None:
    h = registry.add(digits_model)
    (info,) = registry.list()
    assert info.hash == h and info.size == digits_model.stat().st_size
    assert [(t.name, t.dtype, t.shape) for t in info.inputs] == [("x", "float32", (None, 64))]
    assert [(t.name, t.dtype, t.shape) for t in info.outputs] == [("probs", "float32", (None, 10))]


def test_digits_model_is_accurate(registry: ModelRegistry, digits_model: Path) -> None:
    h = registry.add(digits_model)
    x, y = digits_dataset()
    probs = registry.run(h, {"x": x})["probs"]
    assert probs.shape == (len(x), 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (probs.argmax(axis=1) == y).mean() > 0.95


def test_tiny_model_computes_what_its_weights_say(registry: ModelRegistry, tiny_model: bytes) -> None:
    h = registry.add(tiny_model)
    x = np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]], dtype=np.float32)
    logits = x @ np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    want = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(registry.run(h, {"x": x})["probs"], want, rtol=1e-5)
    raw = registry.infer_raw(h, x.tobytes())
    np.testing.assert_allclose(np.frombuffer(raw, dtype="<f4").reshape(2, 2), want, rtol=1e-5)


@pytest.mark.parametrize(
    "inputs",
    [
        {"x": np.zeros((1, 64), dtype=np.float64)},
        {"x": np.zeros((1, 8, 8), dtype=np.float32)},
        {"x": np.zeros((1, 64), dtype=np.float32), "extra": np.zeros(1, dtype=np.float32)},
        {},
    ],
)
def test_wrong_inputs_get_a_clear_error(registry: ModelRegistry, digits_model: Path, inputs: dict) -> None:  # type: ignore[type-arg]
    h = registry.add(digits_model)
    with pytest.raises(InferenceInputError) as err:
        registry.run(h, inputs)
    assert "x: float32[?, 64]" in str(err.value) or "missing" in str(err.value) or "unexpected" in str(err.value)


def test_bad_raw_input_size(registry: ModelRegistry, digits_model: Path) -> None:
    h = registry.add(digits_model)
    with pytest.raises(InferenceInputError):
        registry.infer_raw(h, b"\0" * 100)


@pytest.mark.parametrize("data", [b"", b"not onnx", b"\x08\x07" * 50])
def test_invalid_model_bytes_are_a_remote_fault_and_not_stored(registry: ModelRegistry, data: bytes) -> None:
    with pytest.raises(InvalidModel) as err:
        registry.add(data)
    assert isinstance(err.value, RemoteError)
    assert registry.hashes() == []


def test_unknown_model(registry: ModelRegistry) -> None:
    with pytest.raises(UnknownModel):
        registry.run("0" * 64, {})
    with pytest.raises(UnknownModel):
        registry.resolve("digits")
    assert not registry.has("digits")


def test_tampered_file_is_refused(tmp_path: Path, digits_model: Path) -> None:
    h = ModelRegistry(tmp_path / "m").add(digits_model)
    path = tmp_path / "m" / f"{h}.onnx"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(InvalidModel):
        ModelRegistry(tmp_path / "m").run(h, {"x": np.zeros((1, 64), dtype=np.float32)})


def test_alias_hot_swap_persists(tmp_path: Path, digits_model: Path, tiny_model: bytes) -> None:
    reg = ModelRegistry(tmp_path / "m")
    old = reg.add(digits_model)
    new = reg.add(export_mlp_onnx(train_digits_weights(hidden=8, seed=1)))
    assert reg.set_alias("digits", old) == old
    x = np.zeros((1, 64), dtype=np.float32)
    before = reg.run("digits", {"x": x})["probs"]
    reg.set_alias("digits", new)
    after = reg.run("digits", {"x": x})["probs"]
    assert not np.allclose(before, after)
    reopened = ModelRegistry(tmp_path / "m")
    assert reopened.resolve("digits") == new and reopened.aliases() == {"digits": new}
    assert reopened.info(new).aliases == ("digits",)
    with pytest.raises(InferenceInputError):
        reg.set_alias("0" * 64, new)
    with pytest.raises(UnknownModel):
        reg.set_alias("other", "f" * 64)


def test_session_cache_is_bounded(tmp_path: Path, digits_model: Path, tiny_model: bytes) -> None:
    reg = ModelRegistry(tmp_path / "m", max_sessions=1)
    a, b = reg.add(digits_model), reg.add(tiny_model)
    assert reg.cached_sessions() == 1
    reg.run(a, {"x": np.zeros((1, 64), dtype=np.float32)})
    reg.run(b, {"x": np.zeros((1, 3), dtype=np.float32)})
    assert reg.cached_sessions() == 1
    with pytest.raises(ValueError):
        ModelRegistry(tmp_path / "n", max_sessions=0)


def test_concurrent_runs(registry: ModelRegistry, digits_model: Path) -> None:
    h = registry.add(digits_model)
    x, _ = digits_dataset()
    want = registry.run(h, {"x": x[:40]})["probs"]
    got: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        got[i] = registry.run(h, {"x": x[i : i + 1]})["probs"][0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    np.testing.assert_allclose(np.stack([got[i] for i in range(40)]), want, rtol=1e-5)


def test_providers_include_cpu(registry: ModelRegistry) -> None:
    assert registry.providers[-1] == "CPUExecutionProvider"


def test_registry_from_config(tmp_path: Path, tiny_model: bytes) -> None:
    from edgenode.config import from_table
    from edgenode.inference import InferenceConfig

    cfg = from_table(InferenceConfig, {"max_sessions": 2, "providers": ["CPUExecutionProvider"]})
    reg = ModelRegistry.from_config(tmp_path / "m", cfg)
    assert reg.max_sessions == 2 and reg.providers == ("CPUExecutionProvider",)
    h = reg.add(tiny_model)
    assert reg.run(h, {"x": np.ones((1, 3), dtype=np.float32)})["probs"].shape == (1, 2)
    with pytest.raises(ValueError):
        InferenceConfig(max_sessions=0)
