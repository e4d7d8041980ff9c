"""Folds: disjoint, covering, stratified, seeded; the test split untouched; the summary."""

from __future__ import annotations

import numpy as np
import pytest

from skier.config import DataConfig
from skier.data import stratified_split
from skier.errors import DataError
from skier.search import (
    FoldResult,
    chosen_metrics,
    cv_data,
    fold_bundle,
    make_folds,
    mean_curve,
    refit_bundle,
    summarize_folds,
)

# 3 classes of unequal size (30, 20, 10): stratification has something to keep.
LABELS = np.array([0] * 30 + [1] * 20 + [2] * 10)


@pytest.mark.parametrize("repeats", [1, 3])
def test_kfold_folds_are_disjoint_and_cover_every_row_once_per_repeat(repeats: int) -> None:
    folds = make_folds(LABELS, folds=5, repeats=repeats, seed=0)
    assert len(folds) == 5 * repeats
    for r in range(1, repeats + 1):
        mine = [f for f in folds if f.repeat == r]
        val = np.concatenate([f.val_index for f in mine])
        assert sorted(val.tolist()) == list(range(len(LABELS)))  # each row once
        for f in mine:
            assert not set(f.train_index) & set(f.val_index)
            assert len(f.train_index) + len(f.val_index) == len(LABELS)


def test_stratification_keeps_class_proportions_in_every_fold() -> None:
    for f in make_folds(LABELS, folds=5, seed=3):
        counts = np.bincount(LABELS[f.val_index], minlength=3)
        assert counts.tolist() == [6, 4, 2]


def test_folds_are_seeded_and_repeats_differ() -> None:
    a = make_folds(LABELS, folds=4, repeats=2, seed=7)
    b = make_folds(LABELS, folds=4, repeats=2, seed=7)
    assert all(np.array_equal(x.val_index, y.val_index) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0].val_index, a[4].val_index)  # repeat 2 is a new shuffle
    c = make_folds(LABELS, folds=4, seed=8)
    assert not np.array_equal(a[0].val_index, c[0].val_index)


def test_holdout_defaults_to_80_20_and_is_stratified() -> None:
    (fold,) = make_folds(LABELS, folds=1, seed=0)
    assert len(fold.val_index) == 12 and len(fold.train_index) == 48
    assert np.bincount(LABELS[fold.val_index]).tolist() == [6, 4, 2]
    assert len(make_folds(LABELS, folds=1, repeats=3, seed=0)) == 3


def test_regression_targets_use_plain_kfold() -> None:
    y = np.linspace(0.0, 1.0, 20)
    folds = make_folds(y, folds=4, seed=0)
    assert sorted(np.concatenate([f.val_index for f in folds]).tolist()) == list(range(20))


def test_index_maps_positions_to_rows() -> None:
    rows = np.arange(100, 160)
    folds = make_folds(LABELS, folds=3, seed=0, index=rows)
    assert set(np.concatenate([f.val_index for f in folds]).tolist()) == set(rows.tolist())


def test_too_few_examples_of_a_class_is_one_clear_error() -> None:
    with pytest.raises(DataError, match=r"every class must have at least 20 examples.*class 2: 10"):
        make_folds(LABELS, folds=20, seed=0)
    with pytest.raises(DataError, match="folds must be at most the number of examples"):
        make_folds(LABELS[:5], folds=6, stratify=False)


def test_test_split_is_the_one_load_data_uses_and_never_in_a_fold() -> None:
    config = DataConfig(name="synthetic", samples=300, features=5, classes=3, test_fraction=0.2)
    data = cv_data(config)
    _, _, expected_test = stratified_split(data.raw.y, 0.2, 0.2, 0, True)
    assert np.array_equal(data.test_index, expected_test)
    assert len(data.dev_index) + len(data.test_index) == 300
    folds = make_folds(data.raw.y[data.dev_index], folds=3, index=data.dev_index)
    for f in folds:
        assert not set(f.val_index) & set(data.test_index)
        assert not set(f.train_index) & set(data.test_index)
        bundle = fold_bundle(data, f)
        assert len(bundle.train) == len(f.train_index) and len(bundle.val) == len(f.val_index)
        assert bundle.test is not None and len(bundle.test) == len(data.test_index)
        # standardization is fitted on the fold's own training rows
        assert bundle.train.inputs[0].mean(0).abs().max() < 1e-5
    refit = refit_bundle(data)
    assert refit.val is None and len(refit.train) == len(data.dev_index)


def _fold(number: int, best: int | None, values: list[float]) -> FoldResult:
    history = [{"epoch": float(i + 1), "val_loss": v} for i, v in enumerate(values)]
    return FoldResult(
        number, 1, number, f"run{number}", "", "completed", len(values), best, "val_loss",
        None, chosen_metrics(history, best), history,
    )  # fmt: skip


def test_summary_mean_std_chosen_epochs_and_median() -> None:
    folds = [_fold(1, 2, [0.9, 0.5, 0.6]), _fold(2, 1, [0.7, 0.8]), _fold(3, 3, [1.0, 0.9, 0.3])]
    s = summarize_folds(folds, "val_loss")
    assert s["chosen_epochs"] == [2, 1, 3] and s["median_epoch"] == 2
    assert s["mean"]["val_loss"] == pytest.approx(0.5)
    assert s["std_by_metric"]["val_loss"] == pytest.approx(np.std([0.5, 0.7, 0.3], ddof=1))
    assert [f["val_loss"] for f in s["folds"]] == [0.5, 0.7, 0.3]
    epochs, mean = mean_curve(folds, "val_loss")
    assert epochs == [1, 2, 3]
    assert mean == pytest.approx([(0.9 + 0.7 + 1.0) / 3, (0.5 + 0.8 + 0.9) / 3, (0.6 + 0.3) / 2])
