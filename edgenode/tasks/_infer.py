"""Adapter: serve ``infer`` tasks from an :class:`edgenode.inference.ModelRegistry` (``.npy`` in and out)."""

from __future__ import annotations

import io

import numpy as np

from ..errors import RemoteError
from ..inference import ModelRegistry

__all__ = ["RegistryEngine", "npy_bytes", "npy_load"]


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as ``.npy`` bytes."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def npy_load(data: bytes) -> np.ndarray:
    """Parse ``.npy`` bytes (no pickles); RemoteError when they are not a tensor."""
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise RemoteError(f"input is not a .npy tensor: {exc}") from exc
    if not isinstance(arr, np.ndarray):
        raise RemoteError("input is not a single .npy tensor")
    return arr


class RegistryEngine:
    """The executor's :class:`~edgenode.tasks.InferEngine` over a model registry."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def models(self) -> list[str]:
        return self.registry.hashes()

    def providers(self) -> list[str]:
        return list(self.registry.providers)

    def infer(self, model_hash: str, npy: bytes) -> bytes:
        info = self.registry.info(model_hash)
        if len(info.inputs) != 1:
            raise RemoteError(f"model {model_hash} has {len(info.inputs)} inputs; infer tasks need exactly one")
        out = self.registry.run(model_hash, {info.inputs[0].name: npy_load(npy)})
        return npy_bytes(out[info.outputs[0].name])
