"""The model store against hostile names, power cuts and peers that add models (issue 13, #1, #6, #10)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edgenode.inference import InferenceConfig, ModelRegistry, UnknownModel
from edgenode.inference.digits import export_mlp_onnx


def model(i: int) -> bytes:
    w = np.eye(3, 2, dtype=np.float32)
    return export_mlp_onnx([w, np.full(2, float(i), dtype=np.float32)], name="m")


def test_only_a_hash_names_a_model_file(registry: ModelRegistry) -> None:
    for bad in ("../../etc/passwd", "a" * 63, "A" * 64, "../" + "a" * 61):
        with pytest.raises(UnknownModel):
            registry.path(bad)
        assert not registry.has(bad)


@pytest.mark.parametrize("content", [b"", b"{\"digits\": ", b"[1, 2]", b"\xff\xfe"])
def test_broken_aliases_file_does_not_stop_the_node(tmp_path: Path, tiny_model: bytes, content: bytes,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "models"
    root.mkdir()
    (root / "aliases.json").write_bytes(content)  # what a power cut or a bad edit leaves
    with caplog.at_level(logging.WARNING, logger="edgenode.inference"):
        reg = ModelRegistry(root)
    assert reg.aliases() == {} and "aliases file unreadable" in caplog.text
    assert (root / "aliases.json.bad").read_bytes() == content  # kept for the operator
    h = reg.add(tiny_model)
    reg.set_alias("tiny", h)
    assert ModelRegistry(root).aliases() == {"tiny": h}


def test_aliases_with_bad_names_or_targets_are_dropped(tmp_path: Path, tiny_model: bytes) -> None:
    reg = ModelRegistry(tmp_path)
    h = reg.add(tiny_model)
    (tmp_path / "aliases.json").write_text(f'{{"ok": "{h}", "../x": "{h}", "bad": "../../etc", "n": 5}}')
    assert ModelRegistry(tmp_path).aliases() == {"ok": h}


def test_aliases_written_atomically_leave_no_temp_files(tmp_path: Path, tiny_model: bytes) -> None:
    reg = ModelRegistry(tmp_path)
    reg.set_alias("tiny", reg.add(tiny_model))
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".onnx")) == ["aliases.json"]
    (tmp_path / ".junk.part").write_bytes(b"half")
    ModelRegistry(tmp_path)
    assert not (tmp_path / ".junk.part").exists()


def test_store_keeps_to_its_quota_and_never_drops_a_named_model(tmp_path: Path) -> None:
    blobs = [model(i) for i in range(4)]
    size = max(len(b) for b in blobs)
    reg = ModelRegistry(tmp_path, max_store_bytes=2 * size + size // 2)
    named = reg.add(blobs[0])
    reg.set_alias("serving", named)
    first, second, third = (reg.add(b) for b in blobs[1:])
    assert reg.store_bytes() <= reg.max_store_bytes
    assert reg.has(named) and reg.has(third) and not reg.has(first) and not reg.has(second)


def test_store_quota_from_config(tmp_path: Path) -> None:
    reg = ModelRegistry.from_config(tmp_path, InferenceConfig(max_store_mb=1))
    assert reg.max_store_bytes == 1 << 20
    with pytest.raises(ValueError):
        InferenceConfig(max_store_mb=0)
