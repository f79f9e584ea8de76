"""ONNX inference: a model registry by sha256, signature checks, cached onnxruntime sessions."""

from ._config import InferenceConfig
from ._errors import InferenceError, InferenceFailed, InferenceInputError, InvalidModel, UnknownModel
from ._providers import PREFERRED_PROVIDERS, choose_providers
from ._registry import MODELS_DIR, ModelRegistry, is_model_hash
from ._signature import ModelInfo, TensorSpec, check_inputs, tensor_from_bytes

__all__ = [
    "ModelRegistry",
    "InferenceConfig",
    "ModelInfo",
    "TensorSpec",
    "MODELS_DIR",
    "is_model_hash",
    "check_inputs",
    "tensor_from_bytes",
    "choose_providers",
    "PREFERRED_PROVIDERS",
    "InferenceError",
    "UnknownModel",
    "InvalidModel",
    "InferenceInputError",
    "InferenceFailed",
]
