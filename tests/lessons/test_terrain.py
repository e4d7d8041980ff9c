"""The terrain lessons (16-18), quick versions: each claim holds and its figure is drawn."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from skier.lessons import LessonResult

Quick = Callable[..., LessonResult]  # the shared seeds 0-4 run (conftest.py)


@pytest.mark.slow
def test_skip_connections_smooth_the_landscape(quick: Quick) -> None:
    result = quick("skip-connections")
    m = result.measurements
    assert result.held, result.text()
    assert m["plain_negative_curvature_share"] > 0.05
    assert m["skip_negative_curvature_share"] < 0.02
    assert max(m["plain_train_loss"], m["skip_train_loss"]) < 3 * min(
        m["plain_train_loss"], m["skip_train_loss"]
    )
    # Both nets reached the target loss within the budget: the comparison is at the same loss.
    assert max(m["plain_train_loss"], m["skip_train_loss"]) < 0.05
    assert max(m["plain_epochs"], m["skip_epochs"]) < 400
    assert len(result.checks) == 4
    assert "Loss landscape of a 20-layer MLP without and with skips" in result.figures


def test_large_batches_end_sharper(quick: Quick) -> None:
    result = quick("sharp-vs-flat")
    m = result.measurements
    assert result.held, result.text()
    assert m["large_batch_top_eigenvalue"] > 2 * m["small_batch_top_eigenvalue"]
    assert m["large_batch_top_eigenvalue"] < m["edge_of_stability"] * 1.1
    assert m["large_batch_train_loss"] <= m["small_batch_train_loss"] < 0.05
    assert m["large_batch_power_iterations"] < 1000
    assert len(result.figures) == 1


def test_a_curve_removes_the_barrier_of_the_line(quick: Quick) -> None:
    result = quick("mode-connectivity")
    m = result.measurements
    assert result.held, result.text()
    assert m["line_train_loss_barrier"] > 0.5
    assert m["barrier_share_left"] < 0.1
    assert m["barrier_reduction"] == pytest.approx(1 - m["barrier_share_left"])
    assert max(m["curve_train_loss_barrier"], 0.0) == pytest.approx(
        m["barrier_share_left"] * m["line_train_loss_barrier"]
    )
    assert len(result.figures) == 1
