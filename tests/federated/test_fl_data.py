"""Dirichlet split properties and the DataLoader protocol."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from federated import ArrayLoader, DataLoader, Dataset, DigitsPartition, dirichlet_partition, load_digits_split
from federated.errors import FederatedLocalError


@given(
    labels=st.lists(st.integers(0, 9), min_size=40, max_size=300),
    parts=st.integers(1, 8),
    alpha=st.floats(0.1, 10.0),
    seed=st.integers(0, 2**31),
)
def test_partition_is_disjoint_complete_and_seeded(labels, parts, alpha, seed):
    y = np.array(labels)
    out = dirichlet_partition(y, parts, alpha=alpha, seed=seed, min_size=1)
    assert len(out) == parts
    joined = np.concatenate(out)
    assert sorted(joined.tolist()) == list(range(len(y)))
    assert all(len(p) >= 1 for p in out)
    assert all(np.array_equal(p, np.sort(p)) for p in out)
    again = dirichlet_partition(y, parts, alpha=alpha, seed=seed, min_size=1)
    assert all(np.array_equal(a, b) for a, b in zip(out, again, strict=True))


def test_small_alpha_skews_labels_more_than_large():
    train, _ = load_digits_split()

    def skew(alpha: float) -> float:
        parts = dirichlet_partition(train.y, 10, alpha=alpha, seed=3)
        # mean over parts of the share of the part's most common label
        return float(np.mean([np.bincount(train.y[p], minlength=10).max() / len(p) for p in parts]))

    assert skew(0.1) > skew(100.0) + 0.2
    assert skew(100.0) < 0.25


def test_partition_rejects_impossible_requests():
    with pytest.raises(FederatedLocalError):
        dirichlet_partition([0, 1, 2], 5, min_size=1)
    with pytest.raises(FederatedLocalError):
        dirichlet_partition([0, 1], 1, alpha=0)


def test_digits_partition_loader():
    parts = [DigitsPartition(i, 4, alpha=0.5, seed=1) for i in range(4)]
    assert all(isinstance(p, DataLoader) for p in parts)
    sizes = [len(p.train_data()) for p in parts]
    train, test = load_digits_split(seed=1)
    assert sum(sizes) == len(train)
    assert len(parts[0].test_data()) == len(test)
    assert parts[0].train_data().x.shape[1] == 64
    assert float(parts[0].train_data().x.max()) <= 1.0
    with pytest.raises(FederatedLocalError):
        DigitsPartition(4, 4)


def test_array_loader_is_a_data_loader():
    ds = Dataset(np.zeros((3, 64), np.float32), np.array([0, 1, 2]))
    loader = ArrayLoader(ds, ds)
    assert isinstance(loader, DataLoader)
    assert loader.train_data() is ds
    with pytest.raises(FederatedLocalError):
        Dataset(np.zeros((3, 64), np.float32), np.array([0, 1]))
