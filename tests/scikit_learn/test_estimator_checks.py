"""scikit-learn's own estimator checks (sklearn.utils.estimator_checks) on both estimators.

The estimators are small (one hidden layer of 16, 40 epochs) so the ~60 checks stay quick;
every check they do not pass is listed below with the reason.
"""

from __future__ import annotations

from typing import Any

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from skier.sklearn import SkierClassifier, SkierRegressor

SMALL: dict[str, Any] = {
    "model": {"hidden_sizes": [16]},
    "optim": {"lr": 0.03},
    "train": {"epochs": 40, "batch_size": 64},
    "random_state": 0,
}

# Both fail only by float32 rounding (differences of ~1e-7 relative, above the checks' rtol of
# 1e-7): the network trains and predicts in float32, as torch models do.
EXPECTED_FAILURES = {
    "check_sample_weight_equivalence_on_dense_data": (
        "weights are exact in expectation, not to 1e-7: weighted and repeated rows give the same "
        "loss, but float32 sums it in another order (and mini-batches draw other rows)"
    ),
    "check_methods_subset_invariance": (
        "float32 matrix products round differently for batches of different sizes: "
        "predictions made row by row differ from the whole batch's by ~1e-7 relative, on "
        "some seeds' weights and not others (so this one may also pass: not strict)"
    ),
}


def _expected_failures(estimator: Any) -> dict[str, str]:
    return EXPECTED_FAILURES


@parametrize_with_checks(
    [
        SkierClassifier(**SMALL),
        SkierRegressor(**SMALL),
        # Early stopping on a held-out quarter: the checks fit sets of 20 rows of 3 classes,
        # whose default tenth (2 rows) cannot hold every class (scikit-learn's own
        # MLPClassifier(early_stopping=True) refuses those too, by train_test_split's error).
        SkierClassifier(**SMALL, early_stopping=True, validation_fraction=0.25, n_iter_no_change=3),
        SkierRegressor(**SMALL, early_stopping=True, validation_fraction=0.25, n_iter_no_change=3),
    ],
    expected_failed_checks=_expected_failures,
    xfail_strict=False,
)
@pytest.mark.slow  # about a minute on two cores
def test_scikit_learn_estimator_checks(estimator: Any, check: Any) -> None:
    check(estimator)
