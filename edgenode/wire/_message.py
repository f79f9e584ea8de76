"""Typed, versioned messages over the canonical codec.

A message type is a frozen dataclass registered with :func:`message`, which
gives it a wire ``kind`` (a short dotted name) and a ``version``.  Field types
may be ``int``, ``float``, ``bool``, ``str``, ``bytes``, another message type,
``X | None``, ``tuple[X, ...]`` and ``dict[str, X]`` of those.  Decoding checks
every field against its annotation, so a value that decodes is well typed.

    @message("task.spec", 1)
    @dataclass(frozen=True)
    class TaskSpec:
        module: bytes
        fuel: int = 0
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypeVar, cast

from ..errors import DecodeError, LocalError
from . import _codec

__all__ = ["Message", "message", "to_bytes", "from_bytes", "decode_any", "registry", "kind_of"]


class Message(Protocol):
    """What :func:`message` adds to a dataclass."""

    WIRE_KIND: ClassVar[str]
    WIRE_VERSION: ClassVar[int]


M = TypeVar("M")

_REGISTRY: dict[str, type[Any]] = {}
_HINTS: dict[type[Any], dict[str, Any]] = {}


def message(kind: str, version: int = 1) -> Callable[[type[M]], type[M]]:
    """Register a frozen dataclass as a wire message of ``kind`` and ``version``."""

    def wrap(cls: type[M]) -> type[M]:
        if not dataclasses.is_dataclass(cls):
            raise LocalError(f"{cls.__name__} must be a dataclass")
        if kind in _REGISTRY and _REGISTRY[kind] is not cls:
            raise LocalError(f"wire kind {kind!r} registered twice")
        cls.WIRE_KIND = kind  # type: ignore[attr-defined]
        cls.WIRE_VERSION = version  # type: ignore[attr-defined]
        _REGISTRY[kind] = cls
        return cls

    return wrap


def registry() -> dict[str, type[Any]]:
    """A copy of the kind -> class table."""
    return dict(_REGISTRY)


def kind_of(msg: object) -> str:
    """The wire kind of a message instance."""
    kind = getattr(type(msg), "WIRE_KIND", None)
    if not isinstance(kind, str):
        raise LocalError(f"{type(msg).__name__} is not a registered message")
    return kind


def _hints(cls: type[Any]) -> dict[str, Any]:
    h = _HINTS.get(cls)
    if h is None:
        h = typing.get_type_hints(cls)
        _HINTS[cls] = h
    return h


def _to_value(obj: object) -> _codec.Value:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_value(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [_to_value(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _to_value(v) for k, v in obj.items()}
    return cast(_codec.Value, obj)


def _from_value(tp: Any, v: _codec.Value, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return v
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if v is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _from_value(arg, v, where)
            except DecodeError as exc:
                errors.append(str(exc))
        raise DecodeError(f"{where}: no member of {tp} matches ({'; '.join(errors)})")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(v, list):
            raise DecodeError(f"{where}: expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_value(args[0], x, f"{where}[{i}]") for i, x in enumerate(v))
        if len(args) != len(v):
            raise DecodeError(f"{where}: expected {len(args)} items, got {len(v)}")
        return tuple(_from_value(a, x, f"{where}[{i}]") for i, (a, x) in enumerate(zip(args, v, strict=True)))
    if origin is dict:
        _, vt = typing.get_args(tp)
        if not isinstance(v, dict):
            raise DecodeError(f"{where}: expected a map")
        return {k: _from_value(vt, x, f"{where}.{k}") for k, x in v.items()}
    if tp is float:
        if isinstance(v, float):
            return v
        raise DecodeError(f"{where}: expected float")
    if tp is bool:
        if isinstance(v, bool):
            return v
        raise DecodeError(f"{where}: expected bool")
    if tp is int:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        raise DecodeError(f"{where}: expected int")
    if tp in (str, bytes):
        if isinstance(v, tp):
            return v
        raise DecodeError(f"{where}: expected {tp.__name__}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _from_fields(tp, v, where)
    raise LocalError(f"{where}: unsupported field type {tp!r}")


def _from_fields(cls: type[M], v: _codec.Value, where: str) -> M:
    if not isinstance(v, dict):
        raise DecodeError(f"{where}: expected a map of fields")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    names = set()
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        names.add(f.name)
        if f.name not in v:
            raise DecodeError(f"{where}: missing field {f.name!r}")
        kwargs[f.name] = _from_value(hints[f.name], v[f.name], f"{where}.{f.name}")
    extra = set(v) - names
    if extra:
        raise DecodeError(f"{where}: unknown fields {sorted(extra)}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # __post_init__ validation
        raise DecodeError(f"{where}: {exc}") from exc


def to_bytes(msg: object) -> bytes:
    """Canonical bytes of a registered message: ``[kind, version, fields]``."""
    cls = type(msg)
    return _codec.encode([kind_of(msg), cls.WIRE_VERSION, _to_value(msg)])  # type: ignore[attr-defined]


def decode_any(data: bytes) -> Any:
    """Decode bytes into whichever registered message they encode."""
    v = _codec.decode(data)
    if not (isinstance(v, list) and len(v) == 3):
        raise DecodeError("not a message frame")
    kind, version, fields = v
    if not (isinstance(kind, str) and isinstance(version, int) and not isinstance(version, bool)):
        raise DecodeError("not a message frame")
    cls = _REGISTRY.get(kind)
    if cls is None:
        raise DecodeError(f"unknown message kind {kind!r}")
    if version != cls.WIRE_VERSION:
        raise DecodeError(f"{kind} version {version} unsupported (want {cls.WIRE_VERSION})")
    return _from_fields(cls, fields, kind)


def from_bytes(cls: type[M], data: bytes) -> M:
    """Decode bytes that must encode a message of type ``cls``."""
    msg = decode_any(data)
    if not isinstance(msg, cls):
        raise DecodeError(f"expected {getattr(cls, 'WIRE_KIND', cls.__name__)}, got {kind_of(msg)}")
    return msg
