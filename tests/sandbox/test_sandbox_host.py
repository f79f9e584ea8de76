"""The ``edgenode`` host module: a task calls an ONNX model, only the ones its spec grants."""

from __future__ import annotations

import numpy as np
import pytest
import wasmtime

from edgenode.inference import ModelRegistry, UnknownModel
from edgenode.inference.digits import digits_dataset
from edgenode.sandbox import (
    ERR_BOUNDS,
    ERR_INPUT,
    ERR_NO_MODEL,
    ERR_OUTPUT_TOO_SMALL,
    Limits,
    Sandbox,
    SandboxConfig,
    Status,
    TaskIO,
)

LIMITS = Limits(fuel=100_000_000, timeout_ms=10_000, memory_mb=16)


def _pixels(row: np.ndarray) -> bytes:
    return " ".join(str(round(float(v) * 16)) for v in row).encode()


def test_digits_task_classifies_through_the_host(
    sandbox: Sandbox, registry: ModelRegistry, tasks: dict[str, bytes]
) -> None:
    (model,) = registry.hashes()
    x, _ = digits_dataset()
    h = sandbox.compile(tasks["digits"])
    for i in (0, 1, 7, 42, 100):
        r = sandbox.run(h, TaskIO(stdin=_pixels(x[i]), models=(model,)), LIMITS)
        assert r.status is Status.OK, r.stderr
        want = int(registry.run(model, {"x": (np.round(x[i : i + 1] * 16) / 16).astype(np.float32)})["probs"].argmax())
        assert r.stdout.startswith(f"digit {want} ".encode())


def test_model_granted_by_alias(sandbox: Sandbox, registry: ModelRegistry, tasks: dict[str, bytes]) -> None:
    registry.set_alias("digits", registry.hashes()[0])
    x, _ = digits_dataset()
    r = sandbox.run(sandbox.compile(tasks["digits"]), TaskIO(stdin=_pixels(x[3]), models=("digits",)), LIMITS)
    assert r.status is Status.OK and r.stdout.startswith(b"digit ")


def test_ungranted_model_is_refused(sandbox: Sandbox, tasks: dict[str, bytes]) -> None:
    x, _ = digits_dataset()
    r = sandbox.run(sandbox.compile(tasks["digits"]), TaskIO(stdin=_pixels(x[0])), LIMITS)
    assert r.status is Status.EXIT and r.exit_code == 3
    assert f"infer failed: {ERR_NO_MODEL}".encode() in r.stderr


def test_naming_a_model_the_registry_lacks_fails_before_the_run(sandbox: Sandbox, tasks: dict[str, bytes]) -> None:
    with pytest.raises(UnknownModel):
        sandbox.prepare(sandbox.compile(tasks["digits"]), TaskIO(models=("f" * 64,)), LIMITS)


def test_without_a_registry_every_call_is_refused(tasks: dict[str, bytes]) -> None:
    x, _ = digits_dataset()
    with Sandbox(SandboxConfig()) as sb:
        r = sb.run(sb.compile(tasks["digits"]), TaskIO(stdin=_pixels(x[0]), models=("f" * 64,)), LIMITS)
    assert r.status is Status.EXIT and f"infer failed: {ERR_NO_MODEL}".encode() in r.stderr


def _caller(slot: int, in_ptr: int, in_len: int, out_ptr: int, out_cap: int) -> bytes:
    """A task that calls infer once and exits with -result (or 100 + model_count on success)."""
    return wasmtime.wat2wasm(f"""
    (module
      (import "edgenode" "infer" (func $infer (param i32 i32 i32 i32 i32) (result i32)))
      (import "edgenode" "model_count" (func $count (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start") (local $r i32)
        (local.set $r (call $infer (i32.const {slot}) (i32.const {in_ptr}) (i32.const {in_len})
                                   (i32.const {out_ptr}) (i32.const {out_cap})))
        (if (i32.ge_s (local.get $r) (i32.const 0))
          (then (call $exit (i32.add (i32.const 100) (call $count)))))
        (call $exit (i32.sub (i32.const 0) (local.get $r)))))
    """)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((0, 0, 256, 1024, 40), 101),  # 64 floats in, 10 floats out: success, one model granted
        ((0, 0, 512, 1024, 80), 101),  # a batch of two
        ((1, 0, 256, 1024, 40), -ERR_NO_MODEL),  # slot 1 not granted
        ((-1, 0, 256, 1024, 40), -ERR_NO_MODEL),
        ((0, 0, 100, 1024, 40), -ERR_INPUT),  # not a whole row of 64 float32
        ((0, 0, 0, 1024, 40), -ERR_INPUT),
        ((0, 0, 256, 1024, 39), -ERR_OUTPUT_TOO_SMALL),
        ((0, 65500, 256, 1024, 40), -ERR_BOUNDS),  # input runs past the end of memory
        ((0, 0, 256, 65530, 40), -ERR_BOUNDS),
        ((0, -8, 256, 1024, 40), -ERR_BOUNDS),
    ],
)
def test_infer_error_codes(
    sandbox: Sandbox, registry: ModelRegistry, args: tuple[int, int, int, int, int], expected: int
) -> None:
    r = sandbox.run(sandbox.compile(_caller(*args)), TaskIO(models=(registry.hashes()[0],)), LIMITS)
    assert r.status in (Status.OK, Status.EXIT)
    assert r.exit_code == expected
