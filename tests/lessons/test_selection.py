"""The model-selection lessons (19-21), quick versions: each claim holds and its figure is
drawn."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from skier.lessons import LessonResult

Quick = Callable[..., LessonResult]  # the shared seeds 0-4 run (conftest.py)


@pytest.mark.slow
def test_an_embedding_is_as_accurate_and_learns_the_categories(quick: Quick) -> None:
    result = quick("embeddings")
    m = result.measurements
    assert result.held, result.text()
    assert m["embedding_accuracy"] > m["one_hot_accuracy"] - 0.015
    assert 0.5 < m["embedding_accuracy"] <= m["best_possible_accuracy"]
    assert m["embedding_share_learned"] > 0.7
    assert m["embedding_neighbour_angle_degrees"] < 45.0
    # The parameter counts follow from the architectures: reported, never a check.
    assert m["parameter_ratio"] > 3
    assert not [c for c in result.checks if "parameters" in c.what]
    assert any("parameters" in note for note in result.trials[0].notes)
    assert len(result.figures) == 1


@pytest.mark.slow
def test_a_holdout_estimate_varies_by_the_kfold_spread(quick: Quick) -> None:
    result = quick("cross-validation")
    m = result.measurements
    assert result.held, result.text()
    assert 0.4 <= m["holdout_std_accuracy"] / m["kfold_std_accuracy"] <= 2.5
    assert m["kfold_repeat_means_std"] < 0.5 * m["holdout_std_accuracy"]
    # σ/√k is a formula: reported, not checked.
    assert not [c for c in result.checks if "standard error" in c.what]
    assert len(result.figures) == 1


def test_random_search_beats_grid_search(quick: Quick) -> None:
    result = quick("search")
    m = result.measurements
    assert result.held, result.text()
    assert m["random_best_mean"] < m["grid_best_mean"]
    assert m["random_best_median"] < m["grid_best_median"]
    assert m["random_near_optimal_share"] > m["grid_near_optimal_share"]
    assert 0.0 < m["random_wins_share"] < 1.0  # measured head to head, not checked
    assert not [c for c in result.checks if "distinct" in c.what]
    assert len(result.figures) == 1
