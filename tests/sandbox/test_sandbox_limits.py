"""The node's ceilings on task limits, WASI time under the deadline, and compile limits (issue 13, #2 and #3)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime
from hypothesis import given
from hypothesis import strategies as st

from edgenode.config import CONFIG_TEMPLATE, from_table, load_config
from edgenode.sandbox import CompileTimeout, InvalidModule, Limits, Sandbox, SandboxConfig, Status
from edgenode.sandbox._scan import scan_module
from tests.sandbox.hostile import bomb_module, flood_wasm, grow_wasm, poll_wasm, sleep_wasm

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig()) as sandbox:
        yield sandbox


# -- ceilings ----------------------------------------------------------------------------------


def test_limits_are_clamped_to_the_node_ceilings(sb: Sandbox) -> None:
    greedy = Limits(fuel=10**15, timeout_ms=10**9, memory_mb=4096, max_output_bytes=2**31)
    r = sb.run(sb.compile(grow_wasm(1)), limits=greedy)
    cfg = sb.config
    assert r.ok and r.limits == Limits(cfg.max_fuel, cfg.max_timeout_ms, cfg.max_memory_mb, cfg.max_output_bytes)


def test_limits_under_the_ceilings_are_kept(sb: Sandbox) -> None:
    modest = Limits(fuel=1000_000, timeout_ms=2000, memory_mb=8, max_output_bytes=10)
    assert sb.run(sb.compile(grow_wasm(1)), limits=modest).limits == modest


def test_memory_past_the_node_ceiling_is_refused(sb: Sandbox) -> None:
    # 300 MiB asked for with memory_mb=4096: the node's 256 MiB ceiling holds
    r = sb.run(sb.compile(grow_wasm(300 * 16)), limits=Limits(memory_mb=4096))
    assert r.status is Status.EXIT and r.exit_code == 1


def test_output_past_the_node_ceiling_is_cut(sb: Sandbox) -> None:
    r = sb.run(sb.compile(flood_wasm(2 << 20)), limits=Limits(max_output_bytes=2**31))
    assert r.status is Status.OUTPUT_LIMIT and len(r.stdout) == sb.config.max_output_bytes


def test_smaller_ceilings_from_config() -> None:
    cfg = SandboxConfig(max_memory_mb=4, max_timeout_ms=50, max_fuel=1000, max_output_bytes=3)
    assert cfg.default_limits() == Limits(fuel=1000, timeout_ms=50, memory_mb=4, max_output_bytes=3)
    with Sandbox(cfg) as small:
        r = small.run(small.compile(grow_wasm(100)), limits=Limits(memory_mb=64))
    assert r.status is Status.EXIT and r.exit_code == 1 and r.limits is not None and r.limits.memory_mb == 4


@pytest.mark.parametrize("bad", [{"max_memory_mb": 0}, {"compile_timeout_ms": 0}, {"cache_quota_mb": -1},
                                 {"cranelift_opt_level": "fast"}])
def test_bad_ceilings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SandboxConfig(**bad)  # type: ignore[arg-type]


def test_config_template_sandbox_section_matches_the_defaults() -> None:
    section = CONFIG_TEMPLATE.split("\n[sandbox]\n", 1)[1].split("\n[", 1)[0]
    lines = [ln[2:] for ln in section.splitlines() if ln.startswith("# ") and " = " in ln]
    import tomllib

    table = tomllib.loads("\n".join(lines))
    assert len(table) >= 12 and from_table(SandboxConfig, table) == SandboxConfig()


def test_sandbox_section_loads_from_config_toml(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[sandbox]\nmax_memory_mb = 128\ncache_quota_mb = 64\n"
                                          "[swarm.policy]\nmax_timeout_ms = 1000\n")
    cfg = load_config(tmp_path)
    assert cfg.sandbox.max_memory_mb == 128 and cfg.sandbox.cache_quota_mb == 64
    assert cfg.swarm.policy.max_timeout_ms == 1000


# -- WASI time under the deadline ------------------------------------------------------------------


def test_sleep_past_the_deadline_ends_deadline(sb: Sandbox) -> None:
    r = sb.run(sb.compile(sleep_wasm(3_000_000_000)), limits=Limits(timeout_ms=100))
    assert r.status is Status.DEADLINE and r.trap == "deadline"


def test_endless_sleep_ends_deadline(sb: Sandbox) -> None:
    r = sb.run(sb.compile(sleep_wasm(2**64 - 1)), limits=Limits(timeout_ms=50))
    assert r.status is Status.DEADLINE


def test_short_sleep_wakes_with_its_event(sb: Sandbox) -> None:
    r = sb.run(sb.compile(sleep_wasm(1_000_000)), limits=Limits(timeout_ms=10_000))
    assert r.status is Status.EXIT and r.exit_code == 51  # one event, errno 0


def test_absolute_sleep_on_the_task_clock(sb: Sandbox) -> None:
    # now = clock_time_get(monotonic); poll until now + 1 ms (abstime flag)
    setup = """(drop (call $clock (i32.const 1) (i64.const 0) (i32.const 512)))
      (i32.store (i32.const 16) (i32.const 1))
      (i64.store (i32.const 24) (i64.add (i64.load (i32.const 512)) (i64.const 1000000)))
      (i32.store16 (i32.const 40) (i32.const 1))"""
    r = sb.run(sb.compile(poll_wasm(setup)), limits=Limits(timeout_ms=10_000))
    assert r.exit_code == 51


def test_absolute_sleep_far_ahead_ends_deadline(sb: Sandbox) -> None:
    setup = """(drop (call $clock (i32.const 0) (i64.const 0) (i32.const 512)))
      (i64.store (i32.const 24) (i64.add (i64.load (i32.const 512)) (i64.const 60000000000)))
      (i32.store16 (i32.const 40) (i32.const 1))"""  # realtime clock (id 0), a minute ahead
    r = sb.run(sb.compile(poll_wasm(setup)), limits=Limits(timeout_ms=50))
    assert r.status is Status.DEADLINE


def test_fd_subscription_is_ready_at_once(sb: Sandbox) -> None:
    # an fd_read on stdin next to a one-hour clock: the fd event comes back, nothing sleeps
    setup = """(i32.store8 (i32.const 8) (i32.const 1))
      (i32.store8 (i32.const 56) (i32.const 0)) (i32.store (i32.const 64) (i32.const 1))
      (i64.store (i32.const 72) (i64.const 3600000000000))"""
    r = sb.run(sb.compile(poll_wasm(setup, nsubs=2)), limits=Limits(timeout_ms=10_000))
    assert r.exit_code == 51


@pytest.mark.parametrize(("setup", "nsubs", "errno"), [
    ("", 0, 28),  # no subscriptions: EINVAL
    ("(i32.store8 (i32.const 8) (i32.const 9))", 1, 28),  # unknown subscription tag
])
def test_bad_polls_get_an_errno(sb: Sandbox, setup: str, nsubs: int, errno: int) -> None:
    r = sb.run(sb.compile(poll_wasm(setup, nsubs=nsubs)), limits=Limits(timeout_ms=10_000))
    assert r.status is Status.EXIT and r.exit_code == errno


def test_poll_outside_memory_is_efault(sb: Sandbox) -> None:
    wasm = bytes(wasmtime.wat2wasm("""(module
      (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (call $exit (call $poll (i32.const 65500) (i32.const 0) (i32.const 1) (i32.const 8)))))"""))
    r = sb.run(sb.compile(wasm), limits=Limits(timeout_ms=10_000))
    assert r.status is Status.EXIT and r.exit_code == 21


def test_clock_time_get_cputime_is_badf(sb: Sandbox) -> None:
    wasm = bytes(wasmtime.wat2wasm("""(module
      (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start") (call $exit (call $clock (i32.const 2) (i64.const 0) (i32.const 8)))))"""))
    assert sb.run(sb.compile(wasm)).exit_code == 8


# -- compile limits ----------------------------------------------------------------------------------


def test_module_over_the_size_limit_is_invalid() -> None:
    with Sandbox(SandboxConfig(max_module_bytes=100)) as small, pytest.raises(InvalidModule, match="over this node"):
        small.compile(flood_wasm(10))


def test_function_over_the_body_limit_is_invalid_before_compiling(sb: Sandbox) -> None:
    with pytest.raises(InvalidModule, match="function body") as err:
        sb.compile(bomb_module(1 << 20))  # would hold a compiler for minutes
    assert err.value.status is Status.INVALID_MODULE


def test_slow_compile_is_killed_at_the_limit() -> None:
    with Sandbox(SandboxConfig(compile_timeout_ms=300)) as sb, pytest.raises(CompileTimeout) as err:
        sb.compile(bomb_module(64 << 10))
    assert err.value.status is Status.COMPILE_TIMEOUT and isinstance(err.value, InvalidModule)


def test_compile_over_the_memory_limit_is_invalid() -> None:
    with Sandbox(SandboxConfig(compile_memory_mb=64)) as sb, pytest.raises(InvalidModule, match="MiB"):
        sb.compile(bomb_module(200 << 10))


def test_module_compiled_in_a_child_runs(sb: Sandbox) -> None:
    with Sandbox(SandboxConfig(inline_compile_bytes=0)) as child:
        r = child.run(child.compile(sleep_wasm(0)))
    assert r.exit_code == 51


def test_child_refuses_invalid_bytes() -> None:
    bad = b"\0asm\x01\0\0\0" + bytes([10, 4, 1, 2, 0, 0])  # a code entry with no end opcode
    with Sandbox(SandboxConfig(inline_compile_bytes=0)) as child, pytest.raises(InvalidModule, match="valid"):
        child.compile(bad)


def test_scan_finds_the_largest_body() -> None:
    shape = scan_module(bomb_module(10_000))
    assert shape.functions == 1 and 9_000 < shape.largest_body < 10_000
    assert scan_module(b"\0asm\x01\0\0\0").largest_body == 0


@given(st.binary(max_size=64))
def test_scan_parses_or_refuses(tail: bytes) -> None:
    try:
        shape = scan_module(b"\0asm\x01\0\0\0" + tail)
    except InvalidModule:
        return
    assert shape.largest_body <= len(tail)
