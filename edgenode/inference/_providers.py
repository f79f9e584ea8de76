"""Choice of onnxruntime execution providers (pure)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["PREFERRED_PROVIDERS", "choose_providers"]

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
"""Preference order: TensorRT, then CUDA (a Jetson), then the CPU that is always there."""


def choose_providers(available: Sequence[str]) -> list[str]:
    """The providers to ask onnxruntime for, best first, from those ``available``; CPU always last."""
    chosen = [p for p in PREFERRED_PROVIDERS if p in available and p != "CPUExecutionProvider"]
    chosen.append("CPUExecutionProvider")
    return chosen
