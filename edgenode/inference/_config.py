"""``[inference]``: settings of the model registry."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InferenceConfig"]


@dataclass(frozen=True)
class InferenceConfig:
    """``[inference]``: how the node serves ONNX models."""

    max_sessions: int = 8
    """onnxruntime sessions kept loaded at once (least recently used ones are dropped)."""
    threads: int = 1
    """onnxruntime intra-op threads per session (1 suits a Pi running several tasks)."""
    providers: tuple[str, ...] = ()
    """Execution providers to use, best first; empty picks the best the installed onnxruntime offers."""
    max_store_mb: int = 256
    """Disk space of stored models, in MiB; past it the least recently used models no alias names are deleted."""

    def __post_init__(self) -> None:
        if self.max_store_mb < 1 or self.max_sessions < 1 or self.threads < 0:
            raise ValueError(f"bad inference settings: {self}")
