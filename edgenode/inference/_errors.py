"""Errors of the inference service: one root, local and remote faults split."""

from __future__ import annotations

from ..errors import EdgenodeError, LocalError, RemoteError

__all__ = ["InferenceError", "UnknownModel", "InvalidModel", "InferenceInputError", "InferenceFailed"]


class InferenceError(EdgenodeError):
    """Root of every error the inference service raises on purpose."""


class UnknownModel(InferenceError, LocalError):
    """No model with that hash or alias in the registry."""


class InvalidModel(InferenceError, RemoteError):
    """Bytes that onnxruntime cannot load as a model (a remote fault: models travel between peers)."""


class InferenceInputError(InferenceError, LocalError):
    """Inputs that do not match the model's signature (names, dtype, shape, byte size)."""


class InferenceFailed(InferenceError, LocalError):
    """onnxruntime failed while running a model on inputs that matched its signature."""
