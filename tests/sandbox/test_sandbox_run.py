"""Real wasmtime runs of the example tasks: every status, the grants and the caches."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgenode.errors import LocalError, RemoteError
from edgenode.sandbox import (
    InvalidModule,
    Limits,
    Sandbox,
    SandboxClosed,
    SandboxConfig,
    Status,
    TaskIO,
    UnknownModule,
)

SMALL = Limits(fuel=500_000_000, timeout_ms=5_000, memory_mb=16, max_output_bytes=4096)


def run(sb: Sandbox, module: bytes, io: TaskIO | None = None, limits: Limits = SMALL):  # type: ignore[no-untyped-def]
    return sb.run(sb.compile(module), io, limits)


def test_wordcount_reads_stdin(sandbox: Sandbox, tasks: dict[str, bytes]) -> None:
    r = run(sandbox, tasks["wordcount"], TaskIO(stdin=b"one two\nthree  four five\n"))
    assert r.status is Status.OK and r.exit_code == 0
    assert r.stdout == b"2 5 25\n"
    assert r.fuel_used > 0 and r.trap is None
    assert r.module_hash == hashlib.sha256(tasks["wordcount"]).hexdigest()


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_sha256_task_agrees_with_hashlib(sandbox: Sandbox, tasks: dict[str, bytes], data: bytes) -> None:
    r = run(sandbox, tasks["sha256"], TaskIO(stdin=data))
    assert r.status is Status.OK
    assert r.stdout.decode().strip() == hashlib.sha256(data).hexdigest()


def test_args_env_and_exit_code(sandbox: Sandbox, tasks: dict[str, bytes]) -> None:
    r = run(sandbox, tasks["exitcode"], TaskIO(args=("9", "b c"), env={"WHO": "edge"}))
    assert r.status is Status.EXIT and r.exit_code == 9
    assert b"arg 9\narg b c\nWHO=edge\n" in r.stdout
    assert b"no /data" in r.stdout


def test_readonly_dir_is_readable_not_writable(sandbox: Sandbox, tasks: dict[str, bytes], tmp_path: Path) -> None:
    d = tmp_path / "granted"
    d.mkdir()
    (d / "input.txt").write_text("granted line\n")
    r = run(sandbox, tasks["exitcode"], TaskIO(readonly_dir=d))
    assert r.status is Status.OK
    assert b"data: granted line\n" in r.stdout
    assert b"write /data: denied" in r.stdout
    assert sorted(p.name for p in d.iterdir()) == ["input.txt"]


def test_infinite_loop_runs_out_of_fuel(sandbox: Sandbox, tasks: dict[str, bytes]) -> None:
    r = run(sandbox, tasks["loop"], limits=Limits(fuel=2_000_000, timeout_ms=60_000))
    assert r.status is Status.OUT_OF_FUEL
    assert r.exit_code == -1


def test_infinite_loop_hits_the_deadline(sandbox: Sandbox, tasks: dict[str, bytes]) -> None:
    r = run(sandbox, tasks["loop"], limits=Limits(fuel=10**15, timeout_ms=50))
    assert r.status is Status.DEADLINE


def test_memory_bomb_hits_the_memory_cap(sandbox: Sandbox, tasks: dict[str, bytes]) -> None:
    r = run(sandbox, tasks["membomb"], limits=Limits(memory_mb=8))
    assert r.status is Status.MEMORY_LIMIT
    assert b"refused after" in r.stderr


def test_module_whose_initial_memory_exceeds_the_cap(sandbox: Sandbox) -> None:
    big = wasmtime.wat2wasm('(module (memory (export "memory") 512) (func (export "_start")))')  # 32 MiB
    assert run(sandbox, big, limits=Limits(memory_mb=8)).status is Status.MEMORY_LIMIT
    assert run(sandbox, big, limits=Limits(memory_mb=64)).status is Status.OK


def test_deep_recursion_traps(sandbox: Sandbox, tasks: dict[str, bytes]) -> None:
    c = run(sandbox, tasks["recurse"])
    assert c.status is Status.TRAP and c.trap
    w = run(sandbox, tasks["stackbomb"])
    assert w.status is Status.TRAP and w.trap == "stack_overflow"


def test_unreachable_traps(sandbox: Sandbox, tasks: dict[str, bytes]) -> None:
    r = run(sandbox, tasks["unreachable"])
    assert (r.status, r.trap) == (Status.TRAP, "unreachable")


def test_output_flood_is_cut_at_the_cap(sandbox: Sandbox, tasks: dict[str, bytes]) -> None:
    r = run(sandbox, tasks["flood"], limits=Limits(max_output_bytes=1000, fuel=10**12))
    assert r.status is Status.OUTPUT_LIMIT
    assert len(r.stdout) + len(r.stderr) == 1000
    assert r.stdout.startswith(b"flood flood")
    assert r.fuel_used < 10**12


def test_forbidden_import_and_missing_start_are_invalid_modules(sandbox: Sandbox, tasks: dict[str, bytes]) -> None:
    r = run(sandbox, tasks["forbidden"])
    assert r.status is Status.INVALID_MODULE and r.trap is not None and "env.open_socket" in r.trap
    r = run(sandbox, tasks["nostart"])
    assert r.status is Status.INVALID_MODULE and r.trap == "no _start export"


def test_wrong_host_function_type_is_invalid_module(sandbox: Sandbox) -> None:
    bad = wasmtime.wat2wasm('(module (import "edgenode" "infer" (func (param i32))) (func (export "_start")))')
    assert run(sandbox, bad).status is Status.INVALID_MODULE


@pytest.mark.parametrize("data", [b"", b"hello", b"(module)", b"\0asm", b"\0asm\x01\0\0\0\x05"])
def test_non_wasm_is_rejected_as_a_remote_fault(sandbox: Sandbox, data: bytes) -> None:
    with pytest.raises(InvalidModule) as err:
        sandbox.compile(data)
    assert isinstance(err.value, RemoteError)


def test_truncated_module_is_rejected(sandbox: Sandbox, tasks: dict[str, bytes]) -> None:
    with pytest.raises(InvalidModule):
        sandbox.compile(tasks["sha256"][: len(tasks["sha256"]) // 2])


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200) | st.binary(max_size=120).map(lambda b: b"\0asm\x01\0\0\0" + b))
def test_compile_is_total(sandbox: Sandbox, data: bytes) -> None:
    try:
        h = sandbox.compile(data)
    except InvalidModule:
        return
    assert h == hashlib.sha256(data).hexdigest()
    r = sandbox.run(h, limits=SMALL)
    assert isinstance(r.status, Status)


def test_unknown_hash_is_a_local_error(sandbox: Sandbox) -> None:
    with pytest.raises(UnknownModule) as err:
        sandbox.run("0" * 64)
    assert isinstance(err.value, LocalError)


def test_precompiled_cache_serves_a_fresh_sandbox(tmp_path: Path, tasks: dict[str, bytes]) -> None:
    cfg = SandboxConfig(cache_dir=tmp_path / "cache")
    with Sandbox(cfg) as first:
        h = first.compile(tasks["wordcount"])
    cached = list((tmp_path / "cache").rglob("*.cwasm"))
    assert [p.stem for p in cached] == [h]
    with Sandbox(cfg) as second:
        assert second.has_module(h)
        r = second.run(h, TaskIO(stdin=b"a b c"), SMALL)  # never given the bytes
        assert r.status is Status.OK and r.stdout == b"0 3 5\n"
    with Sandbox(SandboxConfig(cache_dir=tmp_path / "other")) as third:
        assert not third.has_module(h)


def test_corrupt_cache_file_is_recompiled(tmp_path: Path, tasks: dict[str, bytes]) -> None:
    cfg = SandboxConfig(cache_dir=tmp_path / "cache")
    with Sandbox(cfg) as first:
        h = first.compile(tasks["hello"])
    (path,) = list((tmp_path / "cache").rglob("*.cwasm"))
    path.write_bytes(b"garbage")
    with Sandbox(cfg) as second:
        assert second.compile(tasks["hello"]) == h
        assert second.run(h, limits=SMALL).stdout == b"hello\n"


def test_concurrent_runs_from_threads(sandbox: Sandbox, tasks: dict[str, bytes]) -> None:
    h = sandbox.compile(tasks["sha256"])
    inputs = [bytes([i]) * (i * 37) for i in range(16)]
    results: dict[int, bytes] = {}

    def work(i: int) -> None:
        results[i] = sandbox.run(h, TaskIO(stdin=inputs[i]), SMALL).stdout

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert {i: r.decode().strip() for i, r in results.items()} == {
        i: hashlib.sha256(d).hexdigest() for i, d in enumerate(inputs)
    }


def test_prepared_run_starts_once(sandbox: Sandbox, tasks: dict[str, bytes]) -> None:
    prepared = sandbox.prepare(sandbox.compile(tasks["hello"]), limits=SMALL)
    assert prepared.start().stdout == b"hello\n"
    with pytest.raises(LocalError):
        prepared.start()


def test_closed_sandbox_refuses_work(tasks: dict[str, bytes]) -> None:
    sb = Sandbox()
    h = sb.compile(tasks["hello"])
    sb.close()
    with pytest.raises(SandboxClosed):
        sb.run(h)
    with pytest.raises(SandboxClosed):
        sb.compile(tasks["hello"])


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        Limits(fuel=0)


def test_config_loads_from_a_toml_table(tmp_path: Path) -> None:
    from edgenode.config import from_table

    cfg = from_table(SandboxConfig, {"fuel": 1000, "cache_dir": str(tmp_path), "epoch_tick_ms": 2})
    assert cfg.cache_dir == tmp_path and isinstance(cfg.cache_dir, Path)
    assert cfg.default_limits().fuel == 1000
    with pytest.raises(ValueError):
        SandboxConfig(epoch_tick_ms=0)
