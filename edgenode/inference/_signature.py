"""Model signatures and the checks of inputs against them (pure; no onnxruntime here)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ._errors import InferenceInputError

__all__ = ["TensorSpec", "ModelInfo", "ONNX_DTYPES", "check_inputs", "tensor_from_bytes"]

ONNX_DTYPES: dict[str, str] = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}
"""onnxruntime type strings -> numpy dtype names."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model."""

    name: str
    """Tensor name in the graph."""
    dtype: str
    """numpy dtype name (``float32``...), or the onnxruntime type string when it has no numpy twin."""
    shape: tuple[int | None, ...]
    """Dimensions; ``None`` for a dynamic one (batch)."""

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model."""

    hash: str
    """sha256 hex of the model file's bytes."""
    inputs: tuple[TensorSpec, ...]
    """The graph's inputs."""
    outputs: tuple[TensorSpec, ...]
    """The graph's outputs."""
    size: int
    """File size in bytes."""
    aliases: tuple[str, ...] = ()
    """Names that currently point at this model."""


def _shape_ok(spec: TensorSpec, shape: tuple[int, ...]) -> bool:
    if len(shape) != len(spec.shape):
        return False
    return all(want is None or want == got for want, got in zip(spec.shape, shape, strict=True))


def check_inputs(specs: tuple[TensorSpec, ...], inputs: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Check ``inputs`` against ``specs``: same names, dtypes and shapes (dynamic dims free).

    Returns the inputs as numpy arrays; raises ``InferenceInputError`` with a message naming
    the first mismatch.
    """
    want = {s.name for s in specs}
    got = set(inputs)
    if want != got:
        missing, extra = sorted(want - got), sorted(got - want)
        raise InferenceInputError(f"input names differ from the model's: missing {missing}, unexpected {extra}")
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        value = inputs[spec.name]
        if not isinstance(value, np.ndarray):
            raise InferenceInputError(f"input {spec.name!r} must be a numpy array, got {type(value).__name__}")
        if value.dtype.name != spec.dtype:
            raise InferenceInputError(
                f"input {spec.name!r} has dtype {value.dtype.name}, model wants {spec.describe()}"
            )
        if not _shape_ok(spec, tuple(value.shape)):
            raise InferenceInputError(
                f"input {spec.name!r} has shape {list(value.shape)}, model wants {spec.describe()}"
            )
        out[spec.name] = value
    return out


def tensor_from_bytes(spec: TensorSpec, data: bytes) -> np.ndarray:
    """Read raw little-endian ``data`` as a tensor for ``spec``; one dynamic dimension is inferred.

    Raises ``InferenceInputError`` when the byte count does not fit the signature.
    """
    try:
        dtype = np.dtype(spec.dtype).newbyteorder("<")
    except TypeError as exc:
        raise InferenceInputError(f"input {spec.describe()} has no raw byte form") from exc
    dynamic = [i for i, d in enumerate(spec.shape) if d is None]
    if len(dynamic) > 1:
        raise InferenceInputError(f"input {spec.describe()} has more than one dynamic dimension")
    fixed = math.prod(d for d in spec.shape if d is not None)
    unit = fixed * dtype.itemsize
    if unit == 0 or len(data) == 0 or len(data) % unit:
        raise InferenceInputError(
            f"{len(data)} input bytes do not fit {spec.describe()} ({unit} bytes per {'row' if dynamic else 'tensor'})"
        )
    if not dynamic and len(data) != unit:
        raise InferenceInputError(f"{len(data)} input bytes, {spec.describe()} takes exactly {unit}")
    shape = tuple(len(data) // unit if d is None else d for d in spec.shape)
    return np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="), copy=False).reshape(shape)
