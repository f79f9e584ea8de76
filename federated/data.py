"""Data for federated training: scikit-learn's bundled digits, split non-IID.

A device plugs in its own data by implementing :class:`DataLoader` (two methods
returning :class:`Dataset`); :class:`ArrayLoader` wraps arrays already in memory.
Nothing is downloaded: ``load_digits`` ships with scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from .errors import FederatedLocalError

__all__ = [
    "Dataset",
    "DataLoader",
    "ArrayLoader",
    "DigitsPartition",
    "load_digits_split",
    "dirichlet_partition",
]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Features and integer labels of one data set."""

    x: npt.NDArray[np.float32]
    """Features, ``N x F`` float32 (digits: pixel values scaled to [0, 1])."""
    y: npt.NDArray[np.int64]
    """Labels, ``N`` int64 in ``[0, classes)``."""

    def __post_init__(self) -> None:
        if self.x.ndim != 2 or self.y.ndim != 1 or len(self.x) != len(self.y):
            raise FederatedLocalError(f"bad data set shapes x={self.x.shape} y={self.y.shape}")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: npt.NDArray[np.int64]) -> Dataset:
        return Dataset(self.x[idx], self.y[idx])


@runtime_checkable
class DataLoader(Protocol):
    """Where a node's local data comes from.

    Implement both methods to train on a device's own data (sensor logs, camera
    crops...): ``train_data()`` is what the node trains on each round and
    ``test_data()`` what it evaluates the aggregated model on.  Features must match
    the model's input size and labels its classes.  Calls may be repeated; return
    the same data each time (load once, keep it).
    """

    def train_data(self) -> Dataset: ...

    def test_data(self) -> Dataset: ...


@dataclass(frozen=True, eq=False)
class ArrayLoader:
    """A :class:`DataLoader` over arrays already in memory."""

    train: Dataset
    """The local training set."""
    test: Dataset
    """The local evaluation set."""

    def train_data(self) -> Dataset:
        return self.train

    def test_data(self) -> Dataset:
        return self.test


def load_digits_split(*, test_size: float = 0.25, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Digits (1797 8x8 images, 10 classes) as ``(train, test)``, stratified, pixels in [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(
        (x / 16.0).astype(np.float32), y.astype(np.int64), test_size=test_size, random_state=seed, stratify=y
    )
    return Dataset(xtr, ytr), Dataset(xte, yte)


def dirichlet_partition(
    labels: npt.ArrayLike, num_parts: int, *, alpha: float = 0.5, seed: int = 0, min_size: int = 1
) -> list[npt.NDArray[np.int64]]:
    """Split sample indices into ``num_parts`` label-skewed parts.

    For each class, its samples are divided among parts with proportions drawn
    from ``Dirichlet(alpha)`` (small ``alpha`` = more skew).  Redraws (bounded)
    until every part has at least ``min_size`` samples.  Parts are disjoint, cover
    every index, are sorted, and depend only on ``seed``.
    """
    y = np.asarray(labels)
    if num_parts < 1 or alpha <= 0 or min_size < 0:
        raise FederatedLocalError("need num_parts >= 1, alpha > 0, min_size >= 0")
    if num_parts * min_size > len(y):
        raise FederatedLocalError(f"{len(y)} samples cannot give {num_parts} parts of >= {min_size}")
    rng = np.random.default_rng(seed)
    for _attempt in range(1000):
        parts: list[list[int]] = [[] for _ in range(num_parts)]
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            rng.shuffle(idx)
            cuts = (np.cumsum(rng.dirichlet([alpha] * num_parts)) * len(idx)).astype(int)[:-1]
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].extend(int(i) for i in chunk)
        if min(len(p) for p in parts) >= min_size:
            return [np.array(sorted(p), dtype=np.int64) for p in parts]
    raise FederatedLocalError(f"no Dirichlet({alpha}) split gave every part >= {min_size} samples in 1000 draws")


@dataclass(frozen=True)
class DigitsPartition:
    """Node ``index`` of ``num_nodes``'s Dirichlet share of digits; test set is the common one."""

    index: int
    """This node's partition (0-based)."""
    num_nodes: int
    """How many partitions the training set is split into."""
    alpha: float = 0.5
    """Dirichlet concentration (smaller = more label skew)."""
    seed: int = 0
    """Seed of the split (every node must use the same one)."""

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.num_nodes:
            raise FederatedLocalError(f"partition {self.index} out of range 0..{self.num_nodes - 1}")

    def _split(self) -> tuple[Dataset, Dataset]:
        return _cached_split(self.num_nodes, self.alpha, self.seed, self.index)

    def train_data(self) -> Dataset:
        return self._split()[0]

    def test_data(self) -> Dataset:
        return self._split()[1]


_CACHE: dict[tuple[int, float, int, int], tuple[Dataset, Dataset]] = {}


def _cached_split(num_nodes: int, alpha: float, seed: int, index: int) -> tuple[Dataset, Dataset]:
    key = (num_nodes, alpha, seed, index)
    if key not in _CACHE:
        train, test = load_digits_split(seed=seed)
        parts = dirichlet_partition(train.y, num_nodes, alpha=alpha, seed=seed, min_size=5)
        _CACHE[key] = (train.subset(parts[index]), test)
    return _CACHE[key]
