"""The estimators' early stopping (scikit-learn's MLP parameters ``early_stopping``,
``validation_fraction``, ``n_iter_no_change``, ``tol``): a stratified held-out split that
training never sees, a stop before the last epoch and the best epoch's weights kept."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.datasets import load_digits

import skier.sklearn.estimators as estimators
from skier.data.types import DataBundle
from skier.sklearn import SkierClassifier, SkierRegressor

SMALL: dict[str, Any] = {
    "model": {"hidden_sizes": [32]},
    "optim": {"lr": 0.03},
    "train": {"epochs": 200, "batch_size": 128},
    "random_state": 0,
}


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return x / 16.0, y


@pytest.fixture
def bundles(monkeypatch: pytest.MonkeyPatch) -> list[DataBundle]:
    """The data each training call gets (skier's ``fit``, spied on)."""
    seen: list[DataBundle] = []
    real = estimators.fit

    def spy(model: Any, bundle: DataBundle, **kw: Any) -> Any:
        seen.append(bundle)
        return real(model, bundle, **kw)

    monkeypatch.setattr(estimators, "fit", spy)
    return seen


def test_stops_early_and_keeps_the_best_epochs_weights(digits) -> None:
    x, y = digits
    clf = SkierClassifier(**SMALL, early_stopping=True, n_iter_no_change=4, tol=0.0).fit(x, y)
    scores = clf.validation_scores_
    assert scores is not None and len(scores) == clf.n_iter_ == len(clf.history_)
    best = int(np.argmax(scores)) + 1  # the first epoch with the highest validation accuracy
    assert clf.n_iter_ == best + 4 < 200  # four epochs without a higher score, then the stop
    assert clf.best_validation_score_ == max(scores)
    # The same fit stopped at the best epoch (a patience it never reaches): the same held-out
    # split and the same first `best` epochs, so the kept weights must be that epoch's.
    twin = SkierClassifier(
        **{**SMALL, "train": {"epochs": best, "batch_size": 128}},
        early_stopping=True, n_iter_no_change=1000, tol=0.0,
    ).fit(x, y)  # fmt: skip
    assert twin.n_iter_ == best and twin.validation_scores_ == scores[:best]
    assert_array_equal(clf.predict_proba(x), twin.predict_proba(x))
    without = SkierClassifier(**{**SMALL, "train": {"epochs": 3, "batch_size": 128}}).fit(x, y)
    assert without.validation_scores_ is None and without.best_validation_score_ is None


def test_the_held_out_fraction_is_stratified_and_not_trained_on(digits, bundles) -> None:
    x, y = digits
    ids = np.arange(len(y), dtype=np.float64)  # a column naming each row
    clf = SkierClassifier(
        **{**SMALL, "train": {"epochs": 2}}, early_stopping=True, validation_fraction=0.2
    ).fit(np.c_[x, ids], y)
    (bundle,) = bundles
    assert bundle.val is not None
    train_ids = bundle.train.inputs[0][:, -1].numpy().astype(int)
    val_ids = bundle.val.inputs[0][:, -1].numpy().astype(int)
    assert len(val_ids) == int(np.ceil(0.2 * len(y)))  # scikit-learn's rounding
    assert np.intersect1d(train_ids, val_ids).size == 0
    assert_array_equal(np.sort(np.r_[train_ids, val_ids]), np.arange(len(y)))
    assert_array_equal(bundle.val.targets.numpy(), y[val_ids])  # codes of 0..9 are 0..9
    share = np.bincount(y[val_ids], minlength=10) / np.bincount(y, minlength=10)
    assert np.all(np.abs(share - 0.2) < 0.02)  # every class's proportion kept
    assert len(clf.validation_scores_) == 2
    # The same seed holds out the same rows; another seed others.
    SkierClassifier(**{**SMALL, "train": {"epochs": 1}}, early_stopping=True,
                    validation_fraction=0.2).fit(np.c_[x, ids], y)  # fmt: skip
    SkierClassifier(**{**SMALL, "train": {"epochs": 1}, "random_state": 1}, early_stopping=True,
                    validation_fraction=0.2).fit(np.c_[x, ids], y)  # fmt: skip
    again, other = (b.val.inputs[0][:, -1].numpy().astype(int) for b in bundles[1:])
    assert_array_equal(again, val_ids)
    assert not np.array_equal(other, val_ids)


def test_regressor_stops_on_r2_and_partial_fit_ignores_early_stopping(digits, bundles) -> None:
    x, y = digits
    target = y.astype(np.float64) / 9.0
    reg = SkierRegressor(**SMALL, early_stopping=True, n_iter_no_change=3).fit(x, target)
    assert reg.n_iter_ < 200 and bundles[0].val is not None
    assert len(bundles[0].val) == int(np.ceil(0.1 * len(y)))
    assert reg.best_validation_score_ is not None and 0.5 < reg.best_validation_score_ <= 1
    # tol 1e-4 is min_delta: a later score higher by less than tol is not a new best
    assert reg.best_validation_score_ in reg.validation_scores_
    assert reg.best_validation_score_ >= max(reg.validation_scores_) - 1e-4
    clf = SkierClassifier(**SMALL, early_stopping=True)
    clf.partial_fit(x, y).partial_fit(x, y)
    assert clf.n_iter_ == 2 and all(b.val is None for b in bundles[1:])
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        ("validation_fraction", 0.0, r"validation_fraction must be in \(0, 1\); got 0\.0\.$"),
        ("validation_fraction", 1.0, r"validation_fraction must be in \(0, 1\); got 1\.0\.$"),
        ("validation_fraction", "0.1", r"validation_fraction must be in \(0, 1\); got '0\.1'"),
        ("n_iter_no_change", 0, r"n_iter_no_change must be an integer >= 1; got 0\.$"),
        ("n_iter_no_change", 2.5, r"n_iter_no_change must be an integer >= 1; got 2\.5\.$"),
        ("tol", -1e-3, r"tol must be a number >= 0; got -0\.001\.$"),
        ("early_stopping", "yes", r"early_stopping must be True or False; got 'yes'\.$"),
    ],
)
@pytest.mark.parametrize("estimator", [SkierClassifier, SkierRegressor])
def test_bad_values_are_one_line_errors_before_anything_changes(
    digits, estimator: Any, param: str, value: Any, message: str
) -> None:
    x, y = digits
    bad = estimator(**SMALL, **{"early_stopping": True, param: value})
    with pytest.raises(ValueError, match=message) as info:
        bad.fit(x[:50], y[:50])
    assert "\n" not in str(info.value)
    assert not hasattr(bad, "n_features_in_")  # checked before fit set anything


def test_a_recorded_fit_stops_and_restores_as_an_unrecorded_one(digits, tmp_path) -> None:
    x, y = digits
    kw = {**SMALL, "early_stopping": True, "n_iter_no_change": 4, "tol": 0.0}
    recorded = SkierClassifier(**kw, record={"dir": str(tmp_path)}).fit(x, y)
    plain = SkierClassifier(**kw).fit(x, y)
    assert recorded.run_id_ is not None and recorded.n_iter_ == plain.n_iter_ < 200
    assert recorded.validation_scores_ == plain.validation_scores_
    assert_array_equal(recorded.predict_proba(x), plain.predict_proba(x))
