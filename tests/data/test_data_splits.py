"""Seeded, stratified splits and k-fold indices."""

from __future__ import annotations

import numpy as np
import pytest

from skier.data import kfold_indices, stratified_split
from skier.errors import DataError


def imbalanced_labels(n: int = 1000) -> np.ndarray:
    # 70 % / 20 % / 10 %, shuffled so that order cannot explain the proportions.
    y = np.repeat([0, 1, 2], [int(0.7 * n), int(0.2 * n), n - int(0.9 * n)])
    return np.random.default_rng(0).permutation(y)


def test_split_sizes_disjoint_and_complete() -> None:
    y = imbalanced_labels()
    train, val, test = stratified_split(y, val_fraction=0.2, test_fraction=0.1, seed=0)
    assert (len(train), len(val), len(test)) == (700, 200, 100)
    joined = np.concatenate([train, val, test])
    assert np.array_equal(np.sort(joined), np.arange(1000))
    for part in (train, val, test):
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)


def test_stratification_keeps_class_proportions() -> None:
    y = imbalanced_labels()
    whole = np.bincount(y) / len(y)
    for part in stratified_split(y, 0.2, 0.1, seed=5):
        share = np.bincount(y[part], minlength=3) / len(part)
        np.testing.assert_allclose(share, whole, atol=0.011)


def test_split_is_deterministic_by_seed() -> None:
    y = imbalanced_labels()
    a = stratified_split(y, 0.2, 0.2, seed=1)
    b = stratified_split(y, 0.2, 0.2, seed=1)
    c = stratified_split(y, 0.2, 0.2, seed=2)
    for left, right in zip(a, b, strict=True):
        np.testing.assert_array_equal(left, right)
    assert not np.array_equal(a[1], c[1])


def test_no_test_split_and_regression_targets() -> None:
    y = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    train, val, test = stratified_split(y, 0.2, 0.0, seed=0)
    assert (len(train), len(val), len(test)) == (40, 10, 0)


def test_too_few_per_class_is_a_clear_error() -> None:
    y = np.array([0] * 20 + [1] * 2)
    with pytest.raises(DataError, match=r"at least 3 examples of every class .*class 1: 2"):
        stratified_split(y, 0.2, 0.2, seed=0)
    # The same labels split fine without stratification.
    stratified_split(y, 0.2, 0.2, seed=0, stratify=False)
    with pytest.raises(DataError, match=r"validation split must be at least one example per class"):
        stratified_split(np.arange(30) % 10, 0.1, 0.0, seed=0)


def test_bad_fractions() -> None:
    with pytest.raises(DataError, match=r"val_fraction must be in \[0, 1\); got 1\.5"):
        stratified_split(np.zeros(10), 1.5, 0.0, seed=0)
    with pytest.raises(DataError, match=r"val_fraction \+ test_fraction must be below 1"):
        stratified_split(np.zeros(10), 0.6, 0.5, seed=0)


def test_kfold_each_index_validated_exactly_once() -> None:
    y = imbalanced_labels(200)
    folds = list(kfold_indices(y, k=5, seed=0))
    assert len(folds) == 5
    seen = np.concatenate([val for _, val in folds])
    assert np.array_equal(np.sort(seen), np.arange(200))
    whole = np.bincount(y) / len(y)
    for train, val in folds:
        assert np.intersect1d(train, val).size == 0 and len(train) + len(val) == 200
        np.testing.assert_allclose(np.bincount(y[val], minlength=3) / len(val), whole, atol=0.03)


def test_kfold_regression_and_determinism() -> None:
    y = np.linspace(0, 1, 23)
    a = [val.tolist() for _, val in kfold_indices(y, k=4, seed=7)]
    b = [val.tolist() for _, val in kfold_indices(y, k=4, seed=7)]
    assert a == b and sorted(i for fold in a for i in fold) == list(range(23))


def test_kfold_errors_raise_at_call_time() -> None:
    with pytest.raises(DataError, match=r"k must be between 2 and the number of examples \(4\)"):
        kfold_indices(np.arange(4), k=5, seed=0)
    with pytest.raises(DataError, match=r"at least 5 examples of every class for 5-fold"):
        kfold_indices(np.array([0] * 10 + [1] * 3), k=5, seed=0)
