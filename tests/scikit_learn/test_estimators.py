"""SkierClassifier and SkierRegressor: labels, parameters, weights, warm starts, pickling,
scikit-learn's tools (Pipeline, searches with n_jobs, cross_val_score) and recorded runs.

scikit-learn is the oracle throughout: its clone, pickle round trip, searches and metrics."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_iris, make_regression
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skier.errors import ConfigError, ModelError
from skier.record.store import RunStore
from skier.sklearn import SkierClassifier, SkierRegressor

FULL: dict[str, Any] = {
    "model": {"hidden_sizes": [16]},
    "optim": {"lr": 0.02},
    "train": {"epochs": 30, "batch_size": "full"},
    "random_state": 0,
}


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(x), y


@pytest.fixture(scope="module")
def regression() -> tuple[np.ndarray, np.ndarray]:
    x, y = make_regression(n_samples=80, n_features=4, noise=1.0, random_state=0)
    return x, y / y.std()


def test_string_labels_probabilities_and_decisions(iris) -> None:
    x, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = SkierClassifier(**FULL).fit(x, names)
    assert clf.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    assert clf.n_features_in_ == 4 and clf.n_iter_ == 30 and len(clf.history_) == 30
    proba = clf.predict_proba(x)
    assert_allclose(proba.sum(axis=1), 1.0)
    assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(x))
    assert clf.decision_function(x).shape == (150, 3)
    assert clf.score(x, names) == accuracy_score(names, clf.predict(x)) > 0.8
    binary = SkierClassifier(**FULL).fit(x, names == "virginica")
    decision = binary.decision_function(x)
    assert decision.shape == (150,)
    assert_array_equal(binary.predict(x), decision > 0)


def test_feature_names_from_a_data_frame(iris) -> None:
    x, y = iris
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    clf = SkierClassifier(**FULL).fit(frame, y)
    assert clf.feature_names_in_.tolist() == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(frame[["d", "c", "b", "a"]])


def test_nested_params_reach_the_sections_without_changing_the_callers() -> None:
    optim = {"name": "sgd", "lr": 0.1}
    clf = SkierClassifier(optim=optim, train={"epochs": 3})
    params = clf.get_params()
    assert params["optim__lr"] == 0.1 and params["train__epochs"] == 3
    clf.set_params(optim__lr=0.5, model__hidden_sizes=[8], random_state=3)
    assert clf.optim == {"name": "sgd", "lr": 0.5} and optim["lr"] == 0.1
    assert clf.model == {"name": "mlp", "hidden_sizes": [8]} and clf.random_state == 3
    copy = clone(clf)
    assert copy.get_params() == clf.get_params() and copy.optim is not clf.optim
    with pytest.raises(ValueError, match=r"optim has no field 'lrr'. Did you mean 'lr'"):
        clf.set_params(optim__lrr=0.1)
    with pytest.raises(ValueError, match=r"'optimizer' is not a section.*Did you mean 'optim'"):
        clf.set_params(optimizer__lr=0.1)
    with pytest.raises(ValueError, match="Invalid parameter 'epochs'"):
        clf.set_params(epochs=3)


def test_bad_settings_are_the_schemas_errors(iris) -> None:
    x, y = iris
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        SkierClassifier(train={"epochs": 0}).fit(x, y)
    with pytest.raises(ConfigError, match="optim must be a mapping"):
        SkierClassifier(optim=3).fit(x, y)


def test_equal_seeds_equal_models(iris) -> None:
    x, y = iris
    a = SkierClassifier(**FULL).fit(x, y).predict_proba(x)
    b = SkierClassifier(**FULL).fit(x, y).predict_proba(x)
    c = SkierClassifier(**{**FULL, "random_state": 1}).fit(x, y).predict_proba(x)
    assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_pickle_and_clone_round_trip(iris) -> None:
    x, y = iris
    clf = SkierClassifier(**FULL).fit(x, y)
    back = pickle.loads(pickle.dumps(clf))
    assert_array_equal(back.predict_proba(x), clf.predict_proba(x))
    refit = clone(clf).fit(x, y)
    assert_array_equal(refit.predict_proba(x), clf.predict_proba(x))


def test_integer_weights_equal_repeated_rows(regression) -> None:
    x, y = regression
    weights = np.tile([0, 1, 2, 3], len(y) // 4)
    weighted = SkierRegressor(**FULL).fit(x, y, sample_weight=weights)
    rows = np.repeat(np.arange(len(y)), weights)
    repeated = SkierRegressor(**FULL).fit(x[rows], y[rows])
    assert_allclose(weighted.predict(x), repeated.predict(x), rtol=1e-4, atol=1e-5)
    plain = SkierRegressor(**FULL).fit(x, y).predict(x)
    assert not np.allclose(weighted.predict(x), plain, rtol=1e-3)
    ones = SkierRegressor(**FULL).fit(x, y, sample_weight=np.ones(len(y)))
    assert_array_equal(ones.predict(x), plain)


def test_warm_start_continues_as_one_longer_fit(regression) -> None:
    x, y = regression
    twice = SkierRegressor(**FULL, warm_start=True).fit(x, y).fit(x, y)
    longer = SkierRegressor(**{**FULL, "train": {"epochs": 60, "batch_size": "full"}}).fit(x, y)
    assert twice.n_iter_ == 60 and len(twice.history_) == 60
    # Full batches and Adam's state kept: the same 60 steps as one fit of 60 epochs.
    assert_allclose(twice.predict(x), longer.predict(x), rtol=1e-5, atol=1e-6)
    assert r2_score(y, twice.predict(x)) > r2_score(y, SkierRegressor(**FULL).fit(x, y).predict(x))


def test_partial_fit_one_epoch_a_call(iris) -> None:
    x, y = iris
    clf = SkierClassifier(**FULL)
    first = y < 2
    clf.partial_fit(x[first], y[first], classes=[0, 1, 2])
    for _ in range(4):
        clf.partial_fit(x, y)
    assert clf.n_iter_ == 5 and clf.classes_.tolist() == [0, 1, 2]
    assert clf.predict_proba(x).shape == (150, 3)
    with pytest.raises(
        ValueError, match=r"only the classes of the first fit \[0, 1, 2\]; got \[7\]"
    ):
        clf.partial_fit(x[:2], [7, 0])
    reg = SkierRegressor(**FULL).partial_fit(x, x[:, :2])
    assert reg.predict(x).shape == (150, 2) and reg.n_outputs_ == 2


def make_net(input_shape: tuple[int, ...], output_size: int, width: int = 4) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(input_shape[0], width), torch.nn.Tanh(), torch.nn.Linear(width, output_size)
    )


def test_a_model_factory_and_its_keywords(iris) -> None:
    x, y = iris
    clf = SkierClassifier(make_net, optim={"lr": 0.05}, train={"epochs": 5}).fit(x, y)
    assert clf.model_[0].out_features == 4
    clf.set_params(model__width=7)
    assert clf.model == {"name": make_net, "width": 7}
    assert clf.fit(x, y).model_[0].out_features == 7
    with pytest.raises(ModelError, match=r"model 'make_net' raised TypeError"):
        SkierClassifier({"name": make_net, "depth": 2}).fit(x, y)


@pytest.mark.slow  # the searches' worker processes import torch: ~45 s on two cores
def test_pipeline_searches_and_cross_validation() -> None:
    x, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), SkierClassifier(**FULL))
    scores = cross_val_score(pipe, x, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.7
    grid = GridSearchCV(pipe, {"skierclassifier__optim__lr": [0.001, 0.05]}, cv=2, n_jobs=2).fit(
        x, y
    )
    assert grid.best_params_ == {"skierclassifier__optim__lr": 0.05}
    assert grid.best_estimator_[-1].optim == {"lr": 0.05}
    rand = RandomizedSearchCV(
        SkierRegressor(**FULL), {"model__hidden_sizes": [[4], [16]], "optim__lr": [0.01, 0.03]},
        n_iter=2, cv=2, n_jobs=2, random_state=0,
    ).fit(x[:, :3], x[:, 3])  # fmt: skip
    assert len(rand.cv_results_["params"]) == 2


def test_recorded_fits_are_runs_in_the_store(iris, tmp_path: Path) -> None:
    x, y = iris
    url = f"sqlite:///{tmp_path / 'skier.db'}"
    record = {"dir": str(tmp_path / "runs"), "store": url}
    clf = SkierClassifier(**FULL, record=record).fit(x, y)
    plain = SkierClassifier(**FULL).fit(x, y)
    assert_allclose(clf.predict_proba(x), plain.predict_proba(x), rtol=1e-6)  # the same fit
    store = RunStore(url).open()
    run = store.get_run(clf.run_id_)
    assert run.status == "completed" and run.epochs_done == 30
    assert len(store.metrics(clf.run_id_)) == 30
    assert Path(run.run_dir or "", "config.yaml").is_file()
    assert run.name == "SkierClassifier-mlp"
    # Every fit of a cross-validation is a run too.
    cross_val_score(SkierClassifier(**FULL, record=record), x, y, cv=2)
    assert len(store.list_runs()) == 3
    with pytest.raises(ConfigError, match="record must be None to continue"):
        clf.partial_fit(x, y)
