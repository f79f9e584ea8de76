"""Signature checks and raw tensor decoding (pure)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgenode.errors import LocalError
from edgenode.inference import InferenceInputError, TensorSpec, check_inputs, choose_providers, tensor_from_bytes

X = TensorSpec("x", "float32", (None, 64))


def test_check_accepts_a_matching_batch() -> None:
    arr = np.zeros((5, 64), dtype=np.float32)
    assert check_inputs((X,), {"x": arr})["x"] is arr


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        ({"x": np.zeros((1, 64), dtype=np.float64)}, "dtype float64"),
        ({"x": np.zeros((1, 63), dtype=np.float32)}, "shape [1, 63]"),
        ({"x": np.zeros((64,), dtype=np.float32)}, "shape [64]"),
        ({"y": np.zeros((1, 64), dtype=np.float32)}, "missing ['x']"),
        ({"x": [[0.0] * 64]}, "numpy array"),
    ],
)
def test_check_names_the_mismatch(inputs: dict[str, object], fragment: str) -> None:
    with pytest.raises(InferenceInputError) as err:
        check_inputs((X,), inputs)
    assert fragment in str(err.value)
    assert isinstance(err.value, LocalError)


def test_tensor_from_bytes_infers_the_batch() -> None:
    data = np.arange(128, dtype=np.float32).tobytes()
    t = tensor_from_bytes(X, data)
    assert t.shape == (2, 64) and t[1, 0] == 64.0


def test_tensor_from_bytes_fixed_shape_needs_exact_size() -> None:
    spec = TensorSpec("v", "int64", (2, 3))
    assert tensor_from_bytes(spec, np.arange(6, dtype=np.int64).tobytes()).tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(InferenceInputError):
        tensor_from_bytes(spec, np.arange(12, dtype=np.int64).tobytes())


@given(data=st.binary(max_size=1200))
def test_tensor_from_bytes_is_total(data: bytes) -> None:
    try:
        t = tensor_from_bytes(X, data)
    except InferenceInputError:
        assert len(data) == 0 or len(data) % 256 != 0
        return
    assert t.dtype == np.float32 and t.shape == (len(data) // 256, 64)
    assert t.tobytes() == data


def test_providers_prefer_accelerators_and_keep_cpu() -> None:
    assert choose_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    got = choose_providers(["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"])
    assert got == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(["AzureExecutionProvider"]) == ["CPUExecutionProvider"]
