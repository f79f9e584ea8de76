"""A finished run leaves nothing alive behind it (a store per task once leaked ~17 KB each)."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import wasmtime

from edgenode.sandbox import Sandbox, TaskIO

CAT = Path(__file__).resolve().parents[1] / "node" / "cat.wat"


def test_a_finished_run_is_collected() -> None:
    with Sandbox() as sb:
        h = sb.compile(bytes(wasmtime.wat2wasm(CAT.read_text())))
        runs = []
        for payload in (b"one", b"two" * 1000):
            run = sb.prepare(h, TaskIO(stdin=payload))
            assert run.start().stdout == payload
            runs.append(weakref.ref(run))
            del run
        gc.collect()
        assert [r() for r in runs] == [None, None]
