"""The model-selection lessons (19-21), quick versions: each claim holds and its figure is
drawn."""

from __future__ import annotations

import pytest

from skier.lessons import run


@pytest.mark.slow
def test_an_embedding_is_as_accurate_with_fewer_parameters() -> None:
    result = run("embeddings", quick=True)
    m = result.measurements
    assert result.held, result.text()
    assert m["embedding_test_accuracy"] > m["one_hot_test_accuracy"] - 0.015
    assert m["one_hot_parameters"] > 3 * m["embedding_parameters"]
    assert m["embedding_neighbour_angle_degrees"] < 45.0
    assert len(result.figures) == 1


@pytest.mark.slow
def test_a_holdout_estimate_varies_by_the_kfold_spread() -> None:
    result = run("cross-validation", quick=True)
    m = result.measurements
    assert result.held, result.text()
    assert 0.4 <= m["holdout_std_accuracy"] / m["kfold_std_accuracy"] <= 2.5
    assert m["holdout_std_accuracy"] > m["kfold_standard_error"]
    assert len(result.figures) == 1


def test_random_search_beats_grid_search() -> None:
    result = run("search", quick=True)
    m = result.measurements
    assert result.held, result.text()
    assert m["random_best_mean"] < m["grid_best_mean"]
    assert m["random_best_median"] < m["grid_best_median"]
    assert m["random_near_optimal_share"] > m["grid_near_optimal_share"]
    assert m["grid_distinct_lrs"] == 3 and m["random_distinct_lrs"] == 9
    assert len(result.figures) == 1
