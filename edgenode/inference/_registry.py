"""The model registry: ONNX models by sha256 under the node home, served by onnxruntime.

Only a sha256 hex digest names a model file; files are written atomically (temp file,
fsync, rename, fsync of the directory), the store is kept under a byte quota (least
recently used models that no alias names go first), and an aliases file that a power cut
or a hand edit left unreadable is set aside with a warning: the node starts with no aliases.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .._files import write_atomic
from ._config import InferenceConfig
from ._errors import InferenceFailed, InferenceInputError, InvalidModel, UnknownModel
from ._providers import choose_providers
from ._signature import ONNX_DTYPES, ModelInfo, TensorSpec, check_inputs, tensor_from_bytes

__all__ = ["ModelRegistry", "MODELS_DIR", "is_model_hash"]

log = logging.getLogger("edgenode.inference")

MODELS_DIR = "models"
"""The registry's directory inside a node home."""
_ALIASES = "aliases.json"
_HASH_RE = re.compile(r"[0-9a-f]{64}")
_ALIAS_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


def is_model_hash(ref: str) -> bool:
    """True when ``ref`` looks like a sha256 hex digest."""
    return _HASH_RE.fullmatch(ref) is not None


def _spec(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (arg.shape or ()))
    return TensorSpec(name=str(arg.name), dtype=ONNX_DTYPES.get(str(arg.type), str(arg.type)), shape=shape)


class _Loaded:
    __slots__ = ("inputs", "outputs", "session")

    def __init__(self, session: Any) -> None:
        self.session = session
        self.inputs = tuple(_spec(a) for a in session.get_inputs())
        self.outputs = tuple(_spec(a) for a in session.get_outputs())


class ModelRegistry:
    """ONNX models stored as ``<root>/<sha256>.onnx``, with names (aliases) and an LRU of sessions.

    Thread-safe: ``run`` may be called from several threads at once (the sandbox's host
    calls and the node's own serving). Aliases let a model be hot-swapped: point
    ``set_alias("digits", new_hash)`` and the next ``run("digits", ...)`` uses the new model.
    """

    def __init__(
        self,
        root_dir: Path,
        *,
        max_sessions: int = 8,
        providers: Sequence[str] | None = None,
        threads: int = 1,
        max_store_bytes: int = 256 << 20,
    ) -> None:
        """``root_dir`` is created if missing; ``providers`` defaults to the best that onnxruntime offers;
        ``threads`` is onnxruntime's intra-op thread count per session (1 suits a Pi and many slots);
        ``max_store_bytes`` bounds the stored models (least recently used unaliased ones are deleted)."""
        if max_sessions < 1 or max_store_bytes < 1:
            raise ValueError("max_sessions and max_store_bytes must be at least 1")
        self.root = Path(root_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        for part in self.root.glob(".*.part"):
            with contextlib.suppress(OSError):
                part.unlink()  # a write cut short by a crash
        self.max_sessions = max_sessions
        self.max_store_bytes = max_store_bytes
        self._uses = 0
        self._last_use: dict[str, int] = {}  # model -> use counter in this process (orders ties in mtime)
        self._providers = list(providers) if providers is not None else choose_providers(ort.get_available_providers())
        self._threads = threads
        self._lock = threading.RLock()
        self._sessions: OrderedDict[str, _Loaded] = OrderedDict()
        self._aliases: dict[str, str] = self._read_aliases()

    @classmethod
    def from_config(cls, root_dir: Path, config: InferenceConfig) -> ModelRegistry:
        """A registry under ``root_dir`` with the ``[inference]`` settings."""
        return cls(
            root_dir, max_sessions=config.max_sessions, providers=config.providers or None, threads=config.threads,
            max_store_bytes=config.max_store_mb << 20,
        )

    # -- what is here -------------------------------------------------------------------

    @property
    def providers(self) -> tuple[str, ...]:
        """Execution providers in use, best first (reported in the node's capabilities)."""
        return tuple(self._providers)

    def path(self, model_hash: str) -> Path:
        """Where the model with this hash lives (whether or not it exists); ``UnknownModel`` for a non-hash."""
        if not is_model_hash(model_hash):
            raise UnknownModel(f"not a model hash: {model_hash[:80]!r}")
        return self.root / f"{model_hash}.onnx"

    def has(self, ref: str) -> bool:
        """True when ``ref`` (hash or alias) names a model in the registry."""
        try:
            self.resolve(ref)
        except UnknownModel:
            return False
        return True

    def resolve(self, ref: str) -> str:
        """The hash that ``ref`` (a hash or an alias) names; ``UnknownModel`` if none."""
        with self._lock:
            h = self._aliases.get(ref, ref)
            if h in self._sessions:  # loaded from a file that matched its hash
                return h
        if is_model_hash(h) and self.path(h).is_file():
            return h
        raise UnknownModel(f"no model {ref!r} in {self.root}")

    def hashes(self) -> list[str]:
        """Hashes of all stored models, sorted."""
        return sorted(p.stem for p in self.root.glob("*.onnx") if is_model_hash(p.stem))

    def info(self, ref: str) -> ModelInfo:
        """Signature and size of one model."""
        h = self.resolve(ref)
        loaded = self._session(h)
        with self._lock:
            names = tuple(sorted(a for a, t in self._aliases.items() if t == h))
        return ModelInfo(h, loaded.inputs, loaded.outputs, self.path(h).stat().st_size, names)

    def list(self) -> list[ModelInfo]:
        """Every stored model with its signature."""
        return [self.info(h) for h in self.hashes()]

    # -- adding and naming ----------------------------------------------------------------

    def add(self, source: Path | bytes) -> str:
        """Store a model (a file path or the bytes of one) and return its sha256 hex.

        The model is loaded once to check it: bytes that are not a loadable ONNX model raise
        ``InvalidModel`` (nothing is stored). Adding a model twice is harmless.
        """
        if isinstance(source, bytes):
            data = source
        else:
            try:
                data = Path(source).read_bytes()
            except OSError as exc:
                raise UnknownModel(f"cannot read model file {source}: {exc.strerror}") from exc
        h = hashlib.sha256(data).hexdigest()
        if self.path(h).is_file():
            return h
        loaded = self._load(data, h)
        try:
            write_atomic(self.path(h), data)
        except OSError as exc:
            raise InferenceFailed(f"cannot store model {h[:12]}: {exc.strerror}") from exc
        self._remember(h, loaded)
        self._touch(h)
        self._evict(keep=h)
        return h

    def _touch(self, h: str) -> None:
        with self._lock:
            self._uses += 1
            self._last_use[h] = self._uses

    def store_bytes(self) -> int:
        """Bytes the stored models take."""
        return sum(t[3] for t in self._stored())

    def _stored(self) -> tuple[tuple[float, int, str, int], ...]:
        """(last use, use counter, hash, bytes) of every stored model, least recently used first."""
        out = []
        for p in self.root.glob("*.onnx"):
            if not is_model_hash(p.stem):
                continue
            with contextlib.suppress(OSError):  # vanished meanwhile
                st = p.stat()
                out.append((st.st_mtime, self._last_use.get(p.stem, 0), p.stem, st.st_size))
        return tuple(sorted(out, key=lambda t: (t[1], t[0], t[2]) if t[1] else (0, t[0], t[2])))

    def _evict(self, keep: str) -> None:
        """Delete least recently used models no alias names until the store fits its quota."""
        stored = self._stored()
        total = sum(t[3] for t in stored)
        with self._lock:
            named = set(self._aliases.values())
        for _, _, h, size in stored:
            if total <= self.max_store_bytes:
                return
            if h == keep or h in named:
                continue
            with contextlib.suppress(FileNotFoundError):
                self.path(h).unlink()
            with self._lock:
                self._sessions.pop(h, None)
                self._last_use.pop(h, None)
            total -= size
            log.info("model evicted from the store (quota)", extra={"model": h[:16], "bytes": size})

    def set_alias(self, name: str, ref: str) -> str:
        """Point the alias ``name`` at the model ``ref`` (hash or alias); returns the hash. Persisted."""
        if not _ALIAS_RE.fullmatch(name) or is_model_hash(name):
            raise InferenceInputError(f"bad alias {name!r}: a letter, then up to 63 of [A-Za-z0-9_.-]")
        h = self.resolve(ref)
        with self._lock:
            self._aliases[name] = h
            self._write_aliases()
        return h

    def aliases(self) -> dict[str, str]:
        """Alias -> hash."""
        with self._lock:
            return dict(self._aliases)

    # -- running ----------------------------------------------------------------------------

    def run(self, ref: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on ``inputs`` (checked against its signature) and return outputs by name."""
        loaded = self._session(self.resolve(ref))
        return self._run(ref, loaded, check_inputs(loaded.inputs, inputs))

    def _run(self, ref: str, loaded: _Loaded, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            results = loaded.session.run(None, feed)
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise InferenceFailed(f"model {ref!r} failed: {str(exc).splitlines()[0]}") from exc
        return {spec.name: np.asarray(r) for spec, r in zip(loaded.outputs, results, strict=True)}

    def infer_raw(self, ref: str, data: bytes) -> bytes:
        """The host call's form: raw little-endian bytes of the single input -> bytes of the first output.

        A dynamic (batch) dimension is inferred from the byte count.
        """
        loaded = self._session(self.resolve(ref))
        if len(loaded.inputs) != 1:
            raise InferenceInputError(f"model {ref!r} has {len(loaded.inputs)} inputs; raw calls need exactly one")
        spec = loaded.inputs[0]
        out = self._run(ref, loaded, {spec.name: tensor_from_bytes(spec, data)})  # right dtype and shape by making
        first = out[loaded.outputs[0].name]
        return np.ascontiguousarray(first, dtype=first.dtype.newbyteorder("<")).tobytes()

    # -- internals --------------------------------------------------------------------------

    def _load(self, data: bytes, h: str) -> _Loaded:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self._threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(data, opts, providers=self._providers)
        except Exception as exc:  # InvalidProtobuf, Fail, ... are pybind types without a common base
            raise InvalidModel(f"model {h[:12]} does not load: {str(exc).splitlines()[0][:200]}") from exc
        return _Loaded(session)

    def _remember(self, h: str, loaded: _Loaded) -> None:
        with self._lock:
            self._sessions[h] = loaded
            self._sessions.move_to_end(h)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)

    def _session(self, h: str) -> _Loaded:
        with self._lock:
            loaded = self._sessions.get(h)
            if loaded is not None:
                self._sessions.move_to_end(h)
                self._uses += 1
                self._last_use[h] = self._uses
                return loaded
        try:
            data = self.path(h).read_bytes()
        except OSError as exc:
            raise UnknownModel(f"model {h} vanished from {self.root}") from exc
        with contextlib.suppress(OSError):
            os.utime(self.path(h))  # least recently used order for the store quota, across restarts
        self._touch(h)
        if hashlib.sha256(data).hexdigest() != h:
            raise InvalidModel(f"model file {self.path(h)} does not match its hash")
        loaded = self._load(data, h)
        self._remember(h, loaded)
        return loaded

    def cached_sessions(self) -> int:
        """Sessions currently held in the LRU."""
        with self._lock:
            return len(self._sessions)

    def _read_aliases(self) -> dict[str, str]:
        """The aliases file; one that is empty or unreadable is moved aside (``aliases.json.bad``), never fatal."""
        path = self.root / _ALIASES
        try:
            table = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            table = exc
        if not isinstance(table, dict):
            why = str(table) if isinstance(table, Exception) else "not a JSON object"
            log.warning("aliases file unreadable; set aside, starting with no aliases",
                        extra={"path": str(path), "error": why[:200]})
            with contextlib.suppress(OSError):
                os.replace(path, path.with_name(_ALIASES + ".bad"))
            return {}
        return {
            k: v for k, v in table.items()
            if isinstance(k, str) and _ALIAS_RE.fullmatch(k) and isinstance(v, str) and is_model_hash(v)
        }

    def _write_aliases(self) -> None:
        data = json.dumps(self._aliases, sort_keys=True, indent=1).encode()
        try:
            write_atomic(self.root / _ALIASES, data)
        except OSError as exc:
            raise InferenceFailed(f"cannot write {self.root / _ALIASES}: {exc.strerror}") from exc
