"""``edgenode models add|list|run|alias``: the node's ONNX model registry."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LocalError
from ..inference import MODELS_DIR, ModelInfo, ModelRegistry
from ._common import EXIT_OK, add_home, home_of, print_json

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser("models", help="the node's ONNX models (add, list, run, alias)")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    a = msub.add_parser("add", help="add an ONNX model file; prints its sha256")
    add_home(a)
    a.add_argument("file", type=Path, metavar="FILE.onnx")
    a.add_argument("--alias", metavar="NAME", help="also point NAME at it")
    a.set_defaults(func=cmd_add)
    lp = msub.add_parser("list", help="list models with their signatures")
    add_home(lp)
    lp.add_argument("--json", action="store_true", help="one JSON object per model")
    lp.set_defaults(func=cmd_list)
    r = msub.add_parser("run", help="run a model on inputs from .npy or .json files")
    add_home(r)
    r.add_argument("model", metavar="HASH|ALIAS")
    r.add_argument(
        "--input", action="append", default=[], metavar="NAME=FILE", help="an input (.npy or .json); repeatable"
    )
    r.add_argument("--json", action="store_true", help="print outputs as JSON lists")
    r.set_defaults(func=cmd_run)
    s = msub.add_parser("alias", help="point NAME at a model (hot swap)")
    add_home(s)
    s.add_argument("name", metavar="NAME")
    s.add_argument("model", metavar="HASH|ALIAS")
    s.set_defaults(func=cmd_alias)


def _registry(args: argparse.Namespace) -> ModelRegistry:
    return ModelRegistry(home_of(args) / MODELS_DIR)


def _info_json(info: ModelInfo) -> dict[str, Any]:
    def tensors(specs: Any) -> list[dict[str, Any]]:
        return [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in specs]

    return {
        "hash": info.hash,
        "size": info.size,
        "aliases": list(info.aliases),
        "inputs": tensors(info.inputs),
        "outputs": tensors(info.outputs),
    }


def cmd_add(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise LocalError(f"no model file {args.file}")
    reg = _registry(args)
    h = reg.add(args.file)
    if args.alias:
        reg.set_alias(args.alias, h)
    print(h)
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    reg = _registry(args)
    for info in reg.list():
        if args.json:
            print_json(_info_json(info))
        else:
            ins = ", ".join(t.describe() for t in info.inputs)
            outs = ", ".join(t.describe() for t in info.outputs)
            names = f" [{', '.join(info.aliases)}]" if info.aliases else ""
            print(f"{info.hash}{names} {info.size} B  ({ins}) -> ({outs})")
    return EXIT_OK


def _load_input(item: str, default_name: str | None, dtypes: dict[str, str]) -> tuple[str, np.ndarray]:
    name, sep, file = item.partition("=")
    if not sep:
        if default_name is None:
            raise LocalError(f"--input {item!r}: the model has several inputs, use NAME=FILE")
        name, file = default_name, item
    if name not in dtypes:
        raise LocalError(f"--input {item!r}: the model has no input {name!r} (has {sorted(dtypes)})")
    path = Path(file)
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            arr = np.asarray(json.loads(path.read_text()), dtype=dtypes[name])
    except (OSError, ValueError, TypeError) as exc:
        raise LocalError(f"cannot read input {path}: {exc}") from exc
    return name, arr


def cmd_run(args: argparse.Namespace) -> int:
    reg = _registry(args)
    info = reg.info(args.model)
    dtypes = {t.name: t.dtype for t in info.inputs}
    default = info.inputs[0].name if len(info.inputs) == 1 else None
    inputs = dict(_load_input(item, default, dtypes) for item in args.input)
    outputs = reg.run(info.hash, inputs)
    if args.json:
        print_json({"model": info.hash, "outputs": {k: v.tolist() for k, v in outputs.items()}})
    else:
        for k, v in outputs.items():
            print(f"{k} {v.dtype.name}{list(v.shape)}")
            print(np.array2string(v, precision=4, suppress_small=True))
    return EXIT_OK


def cmd_alias(args: argparse.Namespace) -> int:
    print(_registry(args).set_alias(args.name, args.model))
    return EXIT_OK
