"""What a node's ``[fl]`` section means when a run starts: its data and its local training.

The section itself (:class:`edgenode.config.FLSection`) lives with the other sections of
``config.toml``.  A node with FL enabled idles until a signed ``fl.start`` command arrives
(:mod:`edgenode.fl`); it then trains on the data the section names:

* by default node ``index`` of ``num_partitions`` Dirichlet shares of scikit-learn's
  bundled digits, the index derived from the peer id (``sha256(peer_id) mod N``) or
  given as ``partition = "3/10"``;
* or ``loader = "package.module:function"``: a function of no argument returning a
  :class:`federated.DataLoader` -- the way a device plugs in its own data.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..config import FLSection, partition_of
from ..errors import LocalError

if TYPE_CHECKING:  # federated pulls in flwr: imported only when a run starts
    from federated import DataLoader, TrainConfig

__all__ = ["make_loader", "train_config"]


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
