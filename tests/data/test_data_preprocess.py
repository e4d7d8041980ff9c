"""The preprocessor learns from the training split only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skier.data import Preprocessor, RawData, drop_missing, missing_counts
from skier.errors import DataError


def table(n: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 3)) * [1.0, 5.0, 0.1] + [10.0, -3.0, 0.0]).astype(np.float32)


def test_standardises_train_to_zero_mean_unit_std() -> None:
    x = table()
    out, cat = Preprocessor().fit_transform(x)
    assert out.dtype == np.float32 and cat is None
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-4)


def test_validation_statistics_are_not_used() -> None:
    train, val = table(seed=0), table(seed=1)
    prep = Preprocessor().fit(train)
    mean_before = prep.to_dict()["mean"]
    shifted = val + 100.0
    out, _ = prep.transform(shifted)
    # The shift shows up in the transformed val data and nowhere in what was learned.
    assert prep.to_dict()["mean"] == mean_before
    assert np.all(out.mean(axis=0) > 5.0)
    np.testing.assert_allclose(mean_before, train.mean(axis=0), rtol=1e-5, atol=1e-5)


def test_constant_feature_and_no_standardise() -> None:
    x = np.array([[1.0, 4.0], [1.0, 6.0]], dtype=np.float32)
    prep = Preprocessor().fit(x)
    assert prep.to_dict()["std"] == [1.0, 1.0]
    np.testing.assert_allclose(prep.transform(x)[0][:, 0], 0.0)
    raw, _ = Preprocessor(standardize=False).fit_transform(x)
    np.testing.assert_array_equal(raw, x)


def test_images_use_one_scalar_mean_and_std() -> None:
    x = np.random.default_rng(0).uniform(0, 255, size=(20, 1, 4, 4)).astype(np.float32)
    prep = Preprocessor().fit(x)
    out, _ = prep.transform(x)
    state = prep.to_dict()
    assert out.shape == x.shape and state["scalar"] and len(state["mean"]) == 1
    assert abs(float(out.mean())) < 1e-5 and abs(float(out.std()) - 1.0) < 1e-4


def test_categories_coded_with_reserved_unknown_index() -> None:
    train_cat = np.array([["red", "s"], ["blue", "m"], ["red", "m"]], dtype=object)
    val_cat = np.array([["green", "s"], ["blue", None]], dtype=object)
    x = np.zeros((3, 1), np.float32)
    prep = Preprocessor(missing="impute", categorical_names=["colour", "size"]).fit(x, train_cat)
    assert prep.cardinalities == [3, 3]  # two known categories + the reserved 0
    _, train_codes = prep.transform(x, train_cat)
    _, val_codes = prep.transform(np.zeros((2, 1), np.float32), val_cat)
    assert train_codes is not None and val_codes is not None
    # Vocabularies are sorted: blue=1, red=2; m=1, s=2.
    assert train_codes.tolist() == [[2, 2], [1, 1], [2, 1]]
    assert val_codes.tolist() == [[0, 2], [1, 0]]  # unseen 'green' and missing size -> 0
    assert val_codes.dtype == np.int64


def test_missing_policy_error_names_each_column() -> None:
    x = np.array([[1.0, np.nan], [np.nan, np.nan], [3.0, 1.0]], dtype=np.float32)
    cat = np.array([["a"], [None], ["b"]], dtype=object)
    prep = Preprocessor(numeric_names=["age", "income"], categorical_names=["city"])
    with pytest.raises(DataError) as info:
        prep.fit(x, cat)
    problems = info.value.problems
    assert len(problems) == 3
    assert "column 'age' must be free of missing values; got '1 row(s) missing" in problems[0]
    assert "'income'" in problems[1] and "2 row(s)" in problems[1]
    assert "'city'" in problems[2] and "'drop' or 'impute'" in problems[2]


def test_missing_policy_error_applies_to_val_too() -> None:
    prep = Preprocessor(numeric_names=["a"]).fit(np.ones((3, 1), np.float32))
    with pytest.raises(DataError, match=r"column 'a' must be free of missing values"):
        prep.transform(np.array([[np.nan]], np.float32))


def test_missing_policy_impute_uses_training_mean() -> None:
    train = np.array([[1.0, 10.0], [3.0, np.nan], [np.nan, 30.0]], dtype=np.float32)
    prep = Preprocessor(missing="impute", standardize=False).fit(train)
    assert prep.to_dict()["mean"] == [2.0, 20.0]
    out, _ = prep.transform(np.array([[np.nan, np.nan]], np.float32))
    assert out.tolist() == [[2.0, 20.0]]
    standardized, _ = Preprocessor(missing="impute").fit_transform(train)
    assert standardized[2, 0] == 0.0 and standardized[1, 1] == 0.0


def test_drop_missing_rows() -> None:
    raw = RawData(
        np.array([[1.0], [np.nan], [3.0], [4.0]], dtype=np.float32),
        np.array([["a"], ["b"], [None], ["c"]], dtype=object),
        np.array([0, 1, 0, 1]),
        ["x"],
        ["c"],
        ["n", "y"],
        "classification",
    )
    assert missing_counts(raw.x_num, raw.x_cat, ["x"], ["c"]) == {"x": 1, "c": 1}
    kept, dropped = drop_missing(raw)
    assert dropped == 2 and kept.y.tolist() == [0, 1] and kept.x_num[:, 0].tolist() == [1.0, 4.0]


def test_state_is_json_and_round_trips() -> None:
    x = table()
    cat = np.array([["a"], ["b"]] * 100, dtype=object)
    prep = Preprocessor(numeric_names=["p", "q", "r"], categorical_names=["c"]).fit(x, cat)
    state = json.loads(json.dumps(prep.state_dict()))
    assert state == prep.to_dict() and state["categories"] == [["a", "b"]]
    again = Preprocessor.from_dict(state)
    for left, right in zip(prep.transform(x, cat), again.transform(x, cat), strict=True):
        assert left is not None and right is not None
        np.testing.assert_array_equal(left, right)


def test_misuse_errors() -> None:
    with pytest.raises(DataError, match="must be fitted before transform"):
        Preprocessor().transform(np.zeros((1, 1), np.float32))
    with pytest.raises(DataError, match=r"missing must be 'error', 'drop' or 'impute'; got 'mean'"):
        Preprocessor(missing="mean")  # type: ignore[arg-type]
    prep = Preprocessor().fit(np.zeros((2, 2), np.float32))
    with pytest.raises(DataError, match=r"x_num must be 2 columns as in training; got 3"):
        prep.transform(np.zeros((2, 3), np.float32))
