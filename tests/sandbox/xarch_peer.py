"""One side of a cross-architecture migration, run by ``test_migration_xarch.py`` on either CPU.

    python xarch_peer.py checkpoint MODULE STDIN EVERY SEED_HEX OUT_SNAPSHOT
    python xarch_peer.py resume MODULE STDIN SNAPSHOT TRUSTED_PUBKEY_HEX

``checkpoint`` runs the task until its EVERY-th call of the host at a safe point, stops it
there and writes the snapshot (signed by the identity of SEED_HEX); ``resume`` opens a
snapshot (trusting only TRUSTED_PUBKEY_HEX), resumes it to the end. Both print one JSON line:
the machine, the code hash, the status, stdout as hex.

Under the emulated aarch64 Python only wasmtime, PyNaCl and cffi are installed (the arm64
wheels), so ``edgenode.inference`` (numpy, onnxruntime) is replaced by its exceptions module:
the sandbox imports it only to map model errors, and the migration task calls no model.
Modules compile in this process (an emulated child would need binfmt_misc).
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _import_sandbox() -> types.ModuleType:
    try:
        import numpy  # noqa: F401
    except ImportError:
        stub = types.ModuleType("edgenode.inference")
        stub.__path__ = [str(REPO / "edgenode" / "inference")]
        sys.modules["edgenode.inference"] = stub
        errors = importlib.import_module("edgenode.inference._errors")
        for name in ("InferenceError", "InferenceInputError", "UnknownModel"):
            setattr(stub, name, getattr(errors, name))
    return importlib.import_module("edgenode.sandbox")


def main(argv: list[str]) -> int:
    sb_mod = _import_sandbox()
    from edgenode.identity import Identity

    mode, module, stdin = argv[1], Path(argv[2]).read_bytes(), Path(argv[3]).read_bytes()
    cfg = sb_mod.SandboxConfig(inline_compile_bytes=8 << 20, compile_timeout_ms=300_000)
    io = sb_mod.TaskIO(stdin=stdin)
    with sb_mod.Sandbox(cfg) as sb:
        h = sb.compile(module)
        if mode == "checkpoint":
            every, me, out = int(argv[4]), Identity(bytes.fromhex(argv[5])), Path(argv[6])
            policy = sb_mod.Checkpointing(me, every_calls=every, stop=True)
            result = sb.run(h, io, checkpointing=policy)
            if result.snapshot is not None:
                out.write_bytes(result.snapshot.data)
        elif mode == "resume":
            snap = sb.open_snapshot(Path(argv[4]).read_bytes(), trusted={bytes.fromhex(argv[5])})
            result = sb.run(h, io, resume=[snap])
        else:
            raise SystemExit(f"unknown mode {mode}")
        print(json.dumps({"machine": platform.machine(), "code_hash": sb.code_hash(h),
                          "status": str(result.status), "stdout": result.stdout.hex()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
