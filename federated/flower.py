"""The one adapter to Flower (``flwr==1.42.0``): records, the signed update wire form, strategies.

* :func:`to_array_record` / :func:`from_array_record`: weights <-> Flower ``ArrayRecord``.
* :class:`ModelUpdate`, :func:`encode_update`, :func:`decode_update`: a model update
  signed by its author (Ed25519) over canonical bytes.  Decoding is total: any
  bytes give a :class:`ModelUpdate` or raise :class:`~federated.errors.BadUpdate`.
* :class:`Aggregator`: Flower's Message-API strategies (FedAvg, FedProx, FedAdam,
  FedYogi, FedAdagrad, FedMedian, Krum, MultiKrum, FedTrimmedAvg, Bulyan) called
  as library code on updates that arrived over gossip.

Wire form (all integers big-endian)::

    b"EFLU" | version (1 byte) | header length (u32) | header | array bytes | signature (64)

The header is canonical JSON (sorted keys, no spaces, ASCII):
``{"arrays": [["<f4", [d0, d1]], ...], "author": hex32, "metrics": {str: float},
"model": str, "num_examples": int, "round": int}``.  The signature covers
``b"edgenode/fl-update\\x00"`` followed by every byte before it.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from .errors import AggregationFailed, BadUpdate, FederatedLocalError
from .models import Weights

__all__ = [
    "Signer",
    "Verifier",
    "ed25519_verify",
    "to_array_record",
    "from_array_record",
    "ModelUpdate",
    "encode_update",
    "decode_update",
    "update_digest",
    "MAX_UPDATE_BYTES",
    "STRATEGIES",
    "StrategyConfig",
    "Contribution",
    "Aggregator",
]

_MAGIC = b"EFLU"
_VERSION = 1
_DOMAIN = b"edgenode/fl-update\x00"
_SIG_LEN = 64
_PREFIX = struct.Struct(">4sBI")
MAX_UPDATE_BYTES = 64 * 1024 * 1024
"""Largest encoded update accepted (64 MiB)."""
_MAX_ARRAYS = 64
_MAX_DIMS = 4
_MAX_METRICS = 32


class Signer(Protocol):
    """Anything that signs with Ed25519 (``edgenode.identity.Identity`` is one)."""

    @property
    def public_key(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes: ...


Verifier = Callable[[bytes, bytes, bytes], bool]
"""``verify(public_key, data, signature) -> valid``; must not raise on bad input."""


def ed25519_verify(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """The default :data:`Verifier` (pynacl)."""
    import nacl.exceptions
    import nacl.signing

    try:
        nacl.signing.VerifyKey(public_key).verify(data, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True


# -- records ------------------------------------------------------------------------
def to_array_record(weights: Sequence[npt.NDArray[Any]]) -> Any:
    """Weights as a Flower ``ArrayRecord`` (keys ``"0"``, ``"1"``...)."""
    from flwr.app import ArrayRecord

    return ArrayRecord([np.asarray(w) for w in weights])


def from_array_record(record: Any) -> Weights:
    """A Flower ``ArrayRecord`` back to float32 weights, in key order."""
    return [np.asarray(a, dtype=np.float32) for a in record.to_numpy_ndarrays()]


# -- the signed update ----------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ModelUpdate:
    """One node's locally trained weights for one round of one model."""

    model: str
    """Model name (also the gossip topic suffix)."""
    round: int
    """Round these weights were trained in (>= 0)."""
    author: bytes
    """Author's Ed25519 public key (32 bytes)."""
    weights: tuple[npt.NDArray[np.float32], ...]
    """The trained weights, float32."""
    num_examples: int
    """Training examples behind the update (FedAvg's weight)."""
    metrics: Mapping[str, float] = field(default_factory=dict)
    """Training metrics (e.g. ``train_loss``)."""


def _header(update: ModelUpdate) -> bytes:
    obj = {
        "arrays": [["<f4", [int(d) for d in w.shape]] for w in update.weights],
        "author": update.author.hex(),
        "metrics": {str(k): float(v) for k, v in update.metrics.items()},
        "model": update.model,
        "num_examples": int(update.num_examples),
        "round": int(update.round),
    }
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def encode_update(update: ModelUpdate, signer: Signer) -> bytes:
    """Canonical bytes of ``update``, signed by ``signer`` (whose key must be the author)."""
    if signer.public_key != update.author:
        raise FederatedLocalError("the signer is not the update's author")
    if update.round < 0 or update.num_examples < 0 or len(update.weights) > _MAX_ARRAYS:
        raise FederatedLocalError("update has a negative round/num_examples or too many arrays")
    try:
        header = _header(update)
    except ValueError as exc:
        raise FederatedLocalError(f"update metrics are not finite: {exc}") from exc
    payload = b"".join(np.ascontiguousarray(w, dtype="<f4").tobytes() for w in update.weights)
    body = _PREFIX.pack(_MAGIC, _VERSION, len(header)) + header + payload
    sig = signer.sign(_DOMAIN + body)
    return body + sig


def update_digest(data: bytes) -> str:
    """The content address of an encoded update: sha256 hex of its bytes."""
    return hashlib.sha256(data).hexdigest()


def _bad(msg: str) -> BadUpdate:
    return BadUpdate("decode", msg)


def _parse_header(raw: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(raw.decode("ascii"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _bad(f"header is not JSON: {exc}") from exc
    if not isinstance(obj, dict) or set(obj) != {"arrays", "author", "metrics", "model", "num_examples", "round"}:
        raise _bad("header has the wrong fields")
    return obj


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name}")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def decode_update(
    data: bytes,
    *,
    verify: Verifier = ed25519_verify,
    model: str | None = None,
    shapes: Sequence[tuple[int, ...]] | None = None,
) -> ModelUpdate:
    """Parse, verify and check an encoded update.

    Raises :class:`BadUpdate` with ``reason`` ``"decode"`` (malformed bytes),
    ``"signature"`` (does not verify), ``"model"`` (another model than ``model``)
    or ``"shape"`` (weights do not match ``shapes``).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _bad("not bytes")
    data = bytes(data)
    if len(data) > MAX_UPDATE_BYTES:
        raise _bad(f"update of {len(data)} bytes exceeds {MAX_UPDATE_BYTES}")
    if len(data) < _PREFIX.size + _SIG_LEN:
        raise _bad("too short")
    magic, version, hlen = _PREFIX.unpack_from(data)
    if magic != _MAGIC or version != _VERSION:
        raise _bad("bad magic or version")
    if _PREFIX.size + hlen + _SIG_LEN > len(data):
        raise _bad("header length past the end")
    raw = data[_PREFIX.size : _PREFIX.size + hlen]
    h = _parse_header(raw)
    arrays, author, metrics = h["arrays"], h["author"], h["metrics"]
    if not (isinstance(h["model"], str) and 0 < len(h["model"]) <= 128):
        raise _bad("bad model name")
    if not (_is_int(h["round"]) and 0 <= h["round"] < 2**63 and _is_int(h["num_examples"])):
        raise _bad("bad round or num_examples")
    if not 0 <= h["num_examples"] < 2**63:
        raise _bad("bad num_examples")
    if not (isinstance(author, str) and len(author) == 64 and all(c in "0123456789abcdef" for c in author)):
        raise _bad("bad author")
    if not (isinstance(metrics, dict) and len(metrics) <= _MAX_METRICS):
        raise _bad("bad metrics")
    for v in metrics.values():
        if not (isinstance(v, float | int) and not isinstance(v, bool) and np.isfinite(v)):
            raise _bad("bad metric value")
    if not (isinstance(arrays, list) and len(arrays) <= _MAX_ARRAYS):
        raise _bad("bad array list")
    shapes_got: list[tuple[int, ...]] = []
    total = 0
    for spec in arrays:
        if not (isinstance(spec, list) and len(spec) == 2 and spec[0] == "<f4" and isinstance(spec[1], list)):
            raise _bad("bad array spec")
        dims = spec[1]
        if len(dims) > _MAX_DIMS or not all(_is_int(d) and 0 <= d <= MAX_UPDATE_BYTES for d in dims):
            raise _bad("bad array shape")
        shape = tuple(int(d) for d in dims)
        shapes_got.append(shape)
        total += int(np.prod(shape, dtype=np.int64)) * 4
        if total > MAX_UPDATE_BYTES:
            raise _bad("arrays too large")
    start = _PREFIX.size + hlen
    if start + total + _SIG_LEN != len(data):
        raise _bad("payload length does not match the header")
    try:
        canonical = json.dumps(h, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except ValueError as exc:
        raise _bad("header not canonical") from exc
    if canonical.encode("ascii") != raw:
        raise _bad("header not canonical")
    pub = bytes.fromhex(author)
    body, sig = data[:-_SIG_LEN], data[-_SIG_LEN:]
    if not verify(pub, _DOMAIN + body, sig):
        raise BadUpdate("signature", "signature does not verify")
    if model is not None and h["model"] != model:
        raise BadUpdate("model", f"update is for model {h['model']!r}, not {model!r}")
    if shapes is not None and shapes_got != [tuple(s) for s in shapes]:
        raise BadUpdate("shape", f"shapes {shapes_got} do not match the model's {list(shapes)}")
    weights = []
    off = start
    for shape in shapes_got:
        n = int(np.prod(shape, dtype=np.int64))
        w = np.frombuffer(data, dtype="<f4", count=n, offset=off).reshape(shape).astype(np.float32)
        off += n * 4
        if not np.isfinite(w).all():
            raise BadUpdate("shape", "weights contain NaN or infinity")
        weights.append(w)
    return ModelUpdate(
        model=h["model"],
        round=h["round"],
        author=pub,
        weights=tuple(weights),
        num_examples=h["num_examples"],
        metrics={k: float(v) for k, v in metrics.items()},
    )


# -- aggregation ---------------------------------------------------------------------
STRATEGIES = (
    "fedavg",
    "fedprox",
    "fedadam",
    "fedyogi",
    "fedadagrad",
    "fedmedian",
    "krum",
    "multikrum",
    "trimmedavg",
    "bulyan",
)
"""Strategy names accepted by :class:`StrategyConfig`."""

ROBUST_STRATEGIES = ("fedmedian", "krum", "multikrum", "trimmedavg", "bulyan")


@dataclass(frozen=True)
class StrategyConfig:
    """Which Flower strategy aggregates, and its parameters."""

    name: str = "fedavg"
    """One of :data:`STRATEGIES`."""
    num_malicious: int = 1
    """Krum/MultiKrum/Bulyan: tolerated Byzantine updates (lowered per call to what the count allows)."""
    multikrum_keep: int = 0
    """MultiKrum: updates averaged after selection (0 = all but ``num_malicious``)."""
    trim_beta: float = 0.2
    """FedTrimmedAvg: fraction cut from each end."""
    proximal_mu: float = 0.1
    """FedProx: proximal term the clients apply (Flower only forwards it in the config)."""
    eta: float = 0.1
    """FedAdam/FedYogi/FedAdagrad: server learning rate."""

    def __post_init__(self) -> None:
        if self.name not in STRATEGIES:
            raise FederatedLocalError(f"unknown strategy {self.name!r}; known: {', '.join(STRATEGIES)}")


@dataclass(frozen=True, eq=False)
class Contribution:
    """One update as the aggregator sees it."""

    weights: Sequence[npt.NDArray[np.float32]]
    """Trained weights."""
    num_examples: int
    """Its weight in weighted averages."""
    metrics: Mapping[str, float] = field(default_factory=dict)
    """Training metrics, aggregated by the strategy (weighted)."""


def _build(cfg: StrategyConfig, n: int) -> Any:
    from flwr.serverapp import strategy as s

    f = cfg.num_malicious
    if cfg.name == "fedavg":
        return s.FedAvg()
    if cfg.name == "fedprox":
        return s.FedProx(proximal_mu=cfg.proximal_mu)
    if cfg.name == "fedadam":
        return s.FedAdam(eta=cfg.eta)
    if cfg.name == "fedyogi":
        return s.FedYogi(eta=cfg.eta)
    if cfg.name == "fedadagrad":
        return s.FedAdagrad(eta=cfg.eta)
    if cfg.name == "fedmedian":
        return s.FedMedian()
    if cfg.name == "trimmedavg":
        return s.FedTrimmedAvg(beta=cfg.trim_beta)
    if cfg.name == "krum":
        return s.Krum(num_malicious_nodes=max(0, min(f, (n - 3) // 2)))
    if cfg.name == "multikrum":
        ff = max(0, min(f, (n - 3) // 2))
        keep = cfg.multikrum_keep or max(1, n - ff)
        return s.MultiKrum(num_malicious_nodes=ff, num_nodes_to_select=min(keep, n))
    return s.Bulyan(num_malicious_nodes=max(0, min(f, (n - 3) // 4)))


def _reply(c: Contribution, idx: int, keys: set[str]) -> Any:
    from flwr.app import ArrayRecord, Message, MessageType, Metadata, MetricRecord, RecordDict

    metrics: dict[str, int | float | list[int] | list[float]] = {
        k: float(v) for k, v in c.metrics.items() if k in keys and k != "num-examples"
    }
    metrics["num-examples"] = int(c.num_examples)
    content = RecordDict({"arrays": ArrayRecord([np.asarray(w) for w in c.weights]), "metrics": MetricRecord(metrics)})
    # Outside a Flower run a Message needs explicit Metadata (flwr 1.42 quirk).
    md = Metadata(
        run_id=0,
        message_id=f"gossip-{idx}",
        src_node_id=idx + 1,
        dst_node_id=0,
        reply_to_message_id="",
        group_id="",
        created_at=time.time(),
        ttl=3600.0,
        message_type=MessageType.TRAIN,
    )
    return Message(content=content, metadata=md)  # type: ignore[call-overload]


class Aggregator:
    """Aggregates contributions with a Flower strategy, as library code.

    One instance per node and model: stateful strategies (FedAdam's moments) keep
    their state across rounds.  Messages are built fresh per call because
    FedMedian and FedTrimmedAvg consume their inputs.
    """

    def __init__(self, config: StrategyConfig = StrategyConfig()) -> None:
        self.config = config
        self._stateful: Any = None

    def _strategy(self, n: int) -> Any:
        if self.config.name in ("fedadam", "fedyogi", "fedadagrad"):
            if self._stateful is None:
                self._stateful = _build(self.config, n)
            return self._stateful
        return _build(self.config, n)

    def aggregate(
        self, server_round: int, contributions: Sequence[Contribution], current: Sequence[npt.NDArray[np.float32]]
    ) -> tuple[Weights, dict[str, float]]:
        """Aggregate ``contributions`` for round ``server_round`` starting from ``current`` weights."""
        from flwr.app.exception import AppExitException

        if not contributions:
            raise AggregationFailed("nothing to aggregate")
        strategy = self._strategy(len(contributions))
        if hasattr(strategy, "current_arrays"):
            # FedAdam/FedYogi/FedAdagrad: normally set by configure_train on a server.
            strategy.current_arrays = {k: a.numpy() for k, a in to_array_record(current).items()}
        # Flower refuses replies whose metric keys differ: keep the keys all peers sent.
        keys = set.intersection(*(set(c.metrics) for c in contributions))
        replies = [_reply(c, i, keys) for i, c in enumerate(contributions)]
        try:
            arrays, metrics = strategy.aggregate_train(server_round=max(1, server_round), replies=replies)
        except (AppExitException, ArithmeticError, ValueError, IndexError, KeyError, TypeError) as exc:
            raise AggregationFailed(f"{self.config.name} failed on {len(contributions)} updates: {exc}") from exc
        if arrays is None:
            raise AggregationFailed(f"{self.config.name} returned nothing for {len(contributions)} updates")
        out = from_array_record(arrays)
        if [w.shape for w in out] != [np.shape(w) for w in current]:
            raise AggregationFailed("aggregate has other shapes than the model")
        return out, {str(k): float(v) for k, v in dict(metrics or {}).items() if isinstance(v, int | float)}
