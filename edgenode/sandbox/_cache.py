"""Precompiled modules on disk: named by sha256, sealed with the node's own key, bounded in bytes.

A precompiled module is native code that wasmtime maps and runs without re-checking it, so
the sandbox only loads a file it can prove it wrote itself: each file carries an
HMAC-SHA256, under a per-node key (``cache.key``, 32 random bytes, mode 0600), over the
module's name and its precompiled bytes. A file whose name is not a sha256 hex digest is
never opened; a file whose seal does not verify is deleted (the module is compiled again
from its bytes, or is missing). Files are written atomically (temp file, fsync, rename,
fsync of the directory) and the directory is kept under a byte quota, least recently used
first out. No wasmtime here: bytes in, bytes out.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from .._files import fsync_dir, write_atomic
from ..errors import LocalError

__all__ = ["ModuleCache", "is_sha256_hex", "KEY_FILE", "write_atomic"]

KEY_FILE = "cache.key"
"""The cache key's file name, in the cache directory."""
_SUFFIX = ".cwasm"
_MAGIC = b"ENCWASM1"
_MAC_LEN = 32
_KEY_LEN = 32
_HEX64 = re.compile(r"[0-9a-f]{64}")

log = logging.getLogger("edgenode.sandbox")


def is_sha256_hex(name: str) -> bool:
    """True for exactly 64 lower-case hex digits: the only names that may become cache paths."""
    return _HEX64.fullmatch(name) is not None


def _load_key(path: Path) -> bytes:
    """The node's cache key at ``path``, created (0600) when missing or malformed."""
    try:
        key = path.read_bytes()
        if len(key) == _KEY_LEN:
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
            return key
        log.warning("sandbox cache key is malformed; making a new one (cached modules will be recompiled)",
                    extra={"path": str(path)})
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(_KEY_LEN)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # never overwrite a key another process just made
        except FileExistsError:
            existing = path.read_bytes()
            if len(existing) == _KEY_LEN:
                return existing
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):  # renamed into place
            os.unlink(tmp)
    fsync_dir(path.parent)
    return key


class ModuleCache:
    """``<root>/<sha256>.cwasm`` files sealed with the key in ``key_dir``, at most ``quota_bytes`` in all.

    Thread-safe. ``load`` returns verified precompiled bytes or ``None``; ``store`` seals and
    writes, then evicts the least recently used files until the directory fits its quota.
    """

    def __init__(self, root: Path, key_dir: Path, quota_bytes: int) -> None:
        self.root = Path(root)
        self.quota_bytes = quota_bytes
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._key = _load_key(Path(key_dir) / KEY_FILE)
        except OSError as exc:
            raise LocalError(f"cannot set up the sandbox cache in {self.root}: {exc.strerror}") from exc
        self._lock = threading.Lock()
        self._index: OrderedDict[str, int] = OrderedDict()  # name -> file bytes, least recent first
        self._total = 0
        self._scan()

    def _scan(self) -> None:
        found: list[tuple[float, str, int]] = []
        for p in self.root.iterdir():
            try:
                if p.name.endswith(".part"):
                    p.unlink()  # a write cut short by a crash
                elif p.suffix == _SUFFIX and is_sha256_hex(p.stem):
                    st = p.stat()
                    found.append((st.st_mtime, p.stem, st.st_size))
            except OSError:
                continue  # vanished meanwhile
        for _, name, size in sorted(found):
            self._index[name] = size
            self._total += size
        self._evict(keep=None)

    # -- queries -----------------------------------------------------------------------------

    def path(self, name: str) -> Path | None:
        """The file of module ``name``, or ``None`` when ``name`` is not a sha256 hex digest."""
        return self.root / f"{name}{_SUFFIX}" if is_sha256_hex(name) else None

    def has(self, name: str) -> bool:
        """True when a file for ``name`` is on disk (its seal is checked by ``load``)."""
        with self._lock:
            return name in self._index

    def usage_bytes(self) -> int:
        """Bytes the cached files take."""
        with self._lock:
            return self._total

    # -- load and store ----------------------------------------------------------------------

    def _mac(self, name: str, payload: bytes | memoryview) -> bytes:
        m = hmac.new(self._key, b"edgenode.cwasm/1\0" + name.encode("ascii") + b"\0", hashlib.sha256)
        m.update(payload)
        return m.digest()

    def load(self, name: str) -> bytes | None:
        """The precompiled bytes of ``name`` if this node wrote them; a file that fails its seal is deleted."""
        path = self.path(name)
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except OSError:
            self._forget(name)
            return None
        head = len(_MAGIC) + _MAC_LEN
        view = memoryview(data)
        if not (data.startswith(_MAGIC) and hmac.compare_digest(view[len(_MAGIC):head], self._mac(name, view[head:]))):
            log.warning("precompiled module failed its seal; deleted", extra={"module_hash": name[:16]})
            self.discard(name)
            return None
        with contextlib.suppress(OSError):  # the order is a hint; the seal is what matters
            os.utime(path)  # least recently used order survives a restart
        with self._lock:
            if name in self._index:
                self._index.move_to_end(name)
        return data[head:]

    def store(self, name: str, payload: bytes) -> None:
        """Seal and write the precompiled bytes of ``name``, then evict down to the quota."""
        path = self.path(name)
        if path is None:
            raise LocalError(f"not a module hash: {name[:80]!r}")
        sealed = _MAGIC + self._mac(name, payload) + payload
        try:
            write_atomic(path, sealed)
        except OSError as exc:
            raise LocalError(f"cannot write {path}: {exc.strerror}") from exc
        with self._lock:
            self._total += len(sealed) - self._index.get(name, 0)
            self._index[name] = len(sealed)
            self._index.move_to_end(name)
        self._evict(keep=name)

    def discard(self, name: str) -> None:
        """Delete the file of ``name`` (no error when there is none)."""
        path = self.path(name)
        if path is None:
            return
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot delete a cached module", extra={"path": str(path), "error": exc.strerror})
        self._forget(name)

    def _forget(self, name: str) -> None:
        with self._lock:
            self._total -= self._index.pop(name, 0)

    def _evict(self, keep: str | None) -> None:
        while True:
            with self._lock:
                if self._total <= self.quota_bytes or not self._index:
                    return
                victim = next(iter(self._index))
                if victim == keep and len(self._index) > 1:
                    self._index.move_to_end(victim)
                    victim = next(iter(self._index))
            self.discard(victim)
