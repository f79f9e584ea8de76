"""``[fl]`` of ``config.toml``: whether and on what data a node joins federated runs.

A node with FL enabled idles until a signed ``fl.start`` command arrives
(:mod:`edgenode.fl_control`); it then trains on the data this section names:

* by default node ``index`` of ``num_partitions`` Dirichlet shares of scikit-learn's
  bundled digits, the index derived from the peer id (``sha256(peer_id) mod N``) or
  given as ``partition = "3/10"``;
* or ``loader = "package.module:function"``: a function of no argument returning a
  :class:`federated.DataLoader` -- the way a device plugs in its own data.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import LocalError

if TYPE_CHECKING:  # federated pulls in flwr: imported only when a run starts
    from federated import DataLoader, TrainConfig

__all__ = ["FLSection", "FL_TEMPLATE", "make_loader", "train_config", "partition_of"]


@dataclass(frozen=True)
class FLSection:
    """``[fl]``: federated learning on this node."""

    enabled: bool = True
    """Accept signed ``fl.start`` commands from the swarm and train when one arrives."""
    partition: str = ""
    """``"K/N"``: train on digits share K (0-based) of N; empty: K from the peer id, N = ``num_partitions``."""
    num_partitions: int = 10
    """Digits shares when ``partition`` is empty (the index is ``sha256(peer_id) mod num_partitions``)."""
    alpha: float = 0.5
    """Dirichlet concentration of the digits split (smaller = more label skew)."""
    seed: int = 0
    """Seed of the digits split (every node of a swarm must use the same one)."""
    loader: str = ""
    """``"module:function"`` returning a :class:`federated.DataLoader` (the device's own data); overrides digits."""
    epochs: int = 5
    """Local passes over the data per round."""
    batch_size: int = 32
    """Minibatch size of local SGD."""
    learning_rate: float = 0.5
    """Local SGD step size."""
    max_rounds: int = 1000
    """Largest ``rounds`` a start command may ask for; bigger ones are refused."""
    controllers: tuple[str, ...] = ()
    """Peer ids allowed to start runs; empty: any peer whose signature verifies."""
    trainers: tuple[str, ...] = ()
    """Peer ids whose model updates count; empty: in swarm mode members with the ``trainer`` role,
    in open mode anyone (open mode cannot tell Sybil keys apart: set this on a public node)."""
    rejoin_quorum: int = 2
    """Distinct peers two or more rounds ahead that make this node jump to their round (>= 2)."""

    def __post_init__(self) -> None:
        if self.num_partitions < 1 or self.epochs < 1 or self.batch_size < 1 or self.max_rounds < 1:
            raise LocalError("[fl] num_partitions, epochs, batch_size and max_rounds must be >= 1")
        if self.rejoin_quorum < 2:
            raise LocalError("[fl] rejoin_quorum must be >= 2 (one peer never moves a node)")
        if self.learning_rate <= 0 or self.alpha <= 0:
            raise LocalError("[fl] learning_rate and alpha must be > 0")
        if self.partition:
            partition_of(self.partition, "")
        if self.loader and ":" not in self.loader:
            raise LocalError(f"[fl] loader {self.loader!r}: expected 'module:function'")


def partition_of(spec: str, peer_id: str, num_partitions: int = 10) -> tuple[int, int]:
    """``(index, count)`` from ``"K/N"``, or from the peer id's hash when ``spec`` is empty."""
    if not spec:
        digest = hashlib.sha256(peer_id.encode()).digest()
        return int.from_bytes(digest[:8], "big") % num_partitions, num_partitions
    k, sep, n = spec.partition("/")
    try:
        index, count = int(k), int(n)
    except ValueError as exc:
        raise LocalError(f"[fl] partition {spec!r}: expected 'K/N', e.g. '3/10'") from exc
    if not sep or count < 1 or not 0 <= index < count:
        raise LocalError(f"[fl] partition {spec!r}: need 0 <= K < N")
    return index, count


def make_loader(section: FLSection, peer_id: str) -> DataLoader:
    """The data loader ``section`` names, for the node ``peer_id``."""
    from federated import DataLoader, DigitsPartition, FederatedError

    if section.loader:
        mod_name, _, fn_name = section.loader.partition(":")
        try:
            fn = getattr(importlib.import_module(mod_name), fn_name)
        except (ImportError, AttributeError) as exc:
            raise LocalError(f"[fl] loader {section.loader!r}: {exc}") from exc
        loader = fn()
        if not isinstance(loader, DataLoader):
            raise LocalError(f"[fl] loader {section.loader!r} returned {type(loader).__name__}, not a DataLoader")
        return loader
    index, count = partition_of(section.partition, peer_id, section.num_partitions)
    try:
        return DigitsPartition(index, count, alpha=section.alpha, seed=section.seed)
    except FederatedError as exc:
        raise LocalError(f"[fl] {exc}") from exc


def train_config(section: FLSection) -> TrainConfig:
    """Local training settings of ``section``."""
    from federated import TrainConfig

    return TrainConfig(epochs=section.epochs, batch_size=section.batch_size, learning_rate=section.learning_rate)


FL_TEMPLATE = """
[fl]
# Join federated runs started with `edgenode fl start --bootstrap ...` (signed fl.start commands).
# enabled = true
# Digits share "K/N" this node trains on; empty: K = sha256(peer id) mod num_partitions.
# partition = ""
# num_partitions = 10
# Dirichlet skew of the digits split (smaller = more) and its seed (same on every node).
# alpha = 0.5
# seed = 0
# Your own data: "package.module:function" returning a federated.DataLoader.
# loader = ""
# Local training per round.
# epochs = 5
# batch_size = 32
# learning_rate = 0.5
# Largest run (rounds) a start command may ask for.
# max_rounds = 1000
# Peer ids allowed to start runs; empty: anyone whose signature verifies.
# controllers = []
# Peer ids whose model updates count; empty: swarm members with the "trainer" role
# (open mode: anyone -- set it on a public node).
# trainers = []
# Distinct peers two or more rounds ahead that make this node rejoin at their round.
# rejoin_quorum = 2
"""
