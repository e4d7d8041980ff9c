"""Lesson 23 (edge of stability), quick version: the claim holds and its figure is drawn."""

from __future__ import annotations

from collections.abc import Callable

from skier.lessons import LessonResult

Quick = Callable[..., LessonResult]  # the shared seeds 0-4 run (conftest.py)


def test_full_batch_gradient_descent_sharpens_to_two_over_lr(quick: Quick) -> None:
    result = quick("edge-of-stability")
    m = result.measurements
    assert result.held, result.text()
    for lr in ("2", "3"):
        assert m[f"lr_{lr}_first_ratio"] < 0.8  # it starts below the edge...
        assert 0.8 < m[f"lr_{lr}_settled_ratio"] < 1.3  # ...and settles at about 2/η
    assert len(result.checks) == 4
    assert "Sharpness against 2/η during full-batch gradient descent" in result.figures
