"""The precompiled-module cache: hash-only names, sealed files, atomic writes, a byte quota (issue 13, #1 and #6)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import wasmtime

from edgenode.errors import LocalError
from edgenode.sandbox import Sandbox, SandboxConfig, Status, UnknownModule, is_module_hash
from edgenode.sandbox._cache import KEY_FILE, ModuleCache
from tests.sandbox.hostile import grow_wasm, sleep_wasm

pytestmark = pytest.mark.timeout(60)

EXIT_7 = bytes(wasmtime.wat2wasm("""(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 7))))"""))


def test_only_sha256_hex_names_a_module() -> None:
    assert is_module_hash("ab" * 32)
    for bad in ("AB" * 32, "ab" * 31, "ab" * 33, "../" * 21 + "a", "ab" * 31 + "/x", "ab" * 32 + "\n"):
        assert not is_module_hash(bad)


def test_traversal_name_never_reaches_a_file(tmp_path: Path) -> None:
    cfg = SandboxConfig(cache_dir=tmp_path / "cache")
    with Sandbox(cfg) as sb:
        planted = tmp_path / "elsewhere"
        planted.mkdir()
        name = "../../elsewhere/"
        name += "a" * (64 - len(name))
        target = planted / f"{name.rsplit('/', 1)[1]}.cwasm"
        target.write_bytes(bytes(wasmtime.Module(sb.engine, EXIT_7).serialize()))  # valid native code
        before = target.stat()
        assert not sb.has_module(name)
        with pytest.raises(UnknownModule):
            sb.run(name)
    assert target.stat().st_mtime_ns == before.st_mtime_ns and sorted(planted.iterdir()) == [target]


def test_unsealed_file_in_the_cache_is_deleted_not_run(tmp_path: Path) -> None:
    cfg = SandboxConfig(cache_dir=tmp_path / "cache")
    with Sandbox(cfg) as first:
        h = first.compile(grow_wasm(1))
        (path,) = (tmp_path / "cache").rglob("*.cwasm")
        # someone swaps in other native code under the same name, without the node's seal
        path.write_bytes(bytes(wasmtime.Module(first.engine, EXIT_7).serialize()))
    with Sandbox(cfg) as second:
        with pytest.raises(UnknownModule):
            second.run(h)
        assert not path.exists() and not second.has_module(h)
        assert second.compile(grow_wasm(1)) == h and second.run(h).status is Status.OK  # recompiled from bytes
    assert path.exists()


def test_file_sealed_by_another_node_is_not_loaded(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(cache_dir=tmp_path / "a")) as a:
        h = a.compile(EXIT_7)
    (path,) = (tmp_path / "a").rglob("*.cwasm")
    (tmp_path / "b").mkdir()
    with Sandbox(SandboxConfig(cache_dir=tmp_path / "b")) as b:
        dest = (tmp_path / "b").joinpath(path.parent.name, path.name)
        dest.write_bytes(path.read_bytes())  # sealed, but with a's key
        with pytest.raises(UnknownModule):
            b.run(h)
        assert not dest.exists()


def test_seal_key_is_private_and_kept(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(cache_dir=tmp_path)) as sb:
        h = sb.compile(sleep_wasm(0))
    key = tmp_path / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32
    with Sandbox(SandboxConfig(cache_dir=tmp_path)) as again:
        assert again.run(h).exit_code == 51  # loaded from disk under the same key


def test_malformed_key_is_replaced(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_bytes(b"short")
    with Sandbox(SandboxConfig(cache_dir=tmp_path)) as sb:
        sb.compile(sleep_wasm(0))
    assert len((tmp_path / KEY_FILE).read_bytes()) == 32


def test_leftover_temp_files_are_removed(tmp_path: Path) -> None:
    cache = ModuleCache(tmp_path / "m", tmp_path, 1 << 20)
    (tmp_path / "m" / ".x.part").write_bytes(b"half a write")
    ModuleCache(tmp_path / "m", tmp_path, 1 << 20)
    assert not (tmp_path / "m" / ".x.part").exists() and cache.usage_bytes() == 0


def test_cache_keeps_to_its_quota_least_recently_used_first(tmp_path: Path) -> None:
    names = [f"{i:064x}" for i in range(4)]
    cache = ModuleCache(tmp_path / "m", tmp_path, quota_bytes=3 * 1100)
    for n in names[:3]:
        cache.store(n, b"x" * 1000)
    assert cache.load(names[0]) == b"x" * 1000  # now the most recently used
    cache.store(names[3], b"y" * 1000)
    assert cache.usage_bytes() <= 3 * 1100
    assert [cache.has(n) for n in names] == [True, False, True, True]
    assert cache.path(names[1]) is not None and not cache.path(names[1]).exists()  # type: ignore[union-attr]
    # a restart rebuilds the index from the files
    again = ModuleCache(tmp_path / "m", tmp_path, quota_bytes=3 * 1100)
    assert [again.has(n) for n in names] == [True, False, True, True]
    assert again.usage_bytes() == cache.usage_bytes()


def test_cache_file_bigger_than_the_quota_is_not_kept(tmp_path: Path) -> None:
    cache = ModuleCache(tmp_path / "m", tmp_path, quota_bytes=500)
    cache.store("ab" * 32, b"z" * 1000)
    assert not cache.has("ab" * 32) and cache.usage_bytes() == 0


def test_sandbox_cache_quota_from_config(tmp_path: Path) -> None:
    with Sandbox(SandboxConfig(cache_dir=tmp_path, cache_quota_mb=1)) as sb:
        for i in range(3):
            sb.compile(grow_wasm(i + 1))
        assert 0 < sb.cache_bytes() <= 1 << 20


def test_store_refuses_a_non_hash_name(tmp_path: Path) -> None:
    cache = ModuleCache(tmp_path / "m", tmp_path, 1 << 20)
    with pytest.raises(LocalError, match="not a module hash"):
        cache.store("../x", b"")
    assert cache.load("../" * 21 + "a") is None
