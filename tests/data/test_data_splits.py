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


# scikit-learn is the oracle: skier's splits are the ones `train_test_split` made for skier
# before skier drew them itself (test held out with `seed`, then validation with `seed + 1`).
def sklearn_split(
    y: np.ndarray, val_fraction: float, test_fraction: float, seed: int, stratify: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    n = len(y)
    labels = np.asarray(y).reshape(n, -1)[:, 0] if stratify else None
    rest, test = np.arange(n), np.empty(0, dtype=np.int64)
    if test_fraction > 0:
        rest, test = train_test_split(
            rest, test_size=int(np.ceil(test_fraction * n)), random_state=seed, stratify=labels
        )
    train, val = rest, np.empty(0, dtype=np.int64)
    if val_fraction > 0:
        train, val = train_test_split(
            rest,
            test_size=int(np.ceil(val_fraction * n)),
            random_state=seed + 1,
            stratify=None if labels is None else labels[rest],
        )
    return np.sort(train), np.sort(val), np.sort(test)


def assert_same_split(y: np.ndarray, val: float, test: float, seed: int, stratify: bool) -> None:
    ours = stratified_split(y, val, test, seed=seed, stratify=stratify)
    theirs = sklearn_split(y, val, test, seed, stratify)
    for name, a, b in zip(("train", "val", "test"), ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=f"{name}: seed {seed}, {val=}, {test=}")


NAMES = np.array(["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "ibis", "jay", "kiwi"])


def test_splits_equal_scikit_learns_for_random_labels_sizes_and_seeds() -> None:
    # Class counts from 2 members up, imbalanced, 1 to 11 classes, int or string labels,
    # fractions that make the sizes' ties and remainders vary; stratified and plain.
    rng = np.random.default_rng(22)
    checked = 0
    while checked < 300:
        classes = int(rng.integers(1, 12))
        counts = rng.integers(3, 40, size=classes)
        counts[0] = 3 if checked % 3 == 0 else counts[0]
        counts[-1] = int(rng.integers(60, 300)) if checked % 4 == 0 else counts[-1]
        y = rng.permutation(np.repeat(np.arange(classes), counts))
        y = NAMES[y] if checked % 5 == 0 else y
        val, test = (float(f) for f in rng.choice([0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.33], 2))
        seed = int(rng.integers(0, 2**31))
        stratify = checked % 6 != 0
        try:
            sklearn_split(y, val, test, seed, stratify)
        except ValueError:
            # Too few examples per class for scikit-learn: skier refuses too (a DataError).
            with pytest.raises(DataError):
                stratified_split(y, val, test, seed=seed, stratify=stratify)
            continue
        assert_same_split(y, val, test, seed, stratify)
        checked += 1


@pytest.mark.parametrize("seed", [0, 1, 7, 42, 2**31])
@pytest.mark.parametrize(
    ("val", "test"), [(0.2, 0.0), (0.0, 0.2), (0.2, 0.2), (0.1, 0.3), (0.15, 0.05)]
)
def test_digits_like_splits_equal_scikit_learns(seed: int, val: float, test: float) -> None:
    y = np.random.default_rng(seed % 97).integers(0, 10, size=1797)
    assert_same_split(y, val, test, seed, True)
    assert_same_split(y, val, test, seed, False)


@pytest.mark.parametrize(
    "y",
    [
        np.array([0, 1] * 9 + [1, 1]),  # two classes
        np.array([0] * 3 + [1] * 30 + [2] * 4),  # small classes beside a large one
        np.array([True, False, False] * 12),  # bool labels
        NAMES[np.arange(40) % 4],  # string labels
        NAMES[np.arange(40) % 4].astype(object),  # object labels
        (np.arange(45) % 3).reshape(-1, 1),  # one label column
        np.random.default_rng(3).normal(size=(37, 2)),  # regression targets: plain shuffle
    ],
)
def test_label_kinds_split_as_scikit_learn_splits_them(y: np.ndarray) -> None:
    stratify = np.asarray(y).dtype.kind != "f"
    for seed in range(6):
        assert_same_split(y, 0.2, 0.2, seed, stratify)
        assert_same_split(y, 0.25, 0.0, seed, stratify)


def test_a_split_too_small_for_every_class_is_a_data_error() -> None:
    # 5 classes of 2: holding out 90 % as test leaves one training example for five classes.
    with pytest.raises(DataError, match=r"training \+ validation split must be at least one"):
        stratified_split(np.arange(10) % 5, 0.0, 0.9, seed=0)
