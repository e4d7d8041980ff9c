"""The terrain lessons (16-18), quick versions: each claim holds and its figure is drawn."""

from __future__ import annotations

import pytest

from skier.lessons import run


@pytest.mark.slow
def test_skip_connections_smooth_the_landscape() -> None:
    result = run("skip-connections", quick=True)
    m = result.measurements
    assert result.held, result.text()
    assert m["plain_negative_curvature_share"] > 0.05
    assert m["skip_negative_curvature_share"] < 0.02
    assert max(m["plain_train_loss"], m["skip_train_loss"]) < 3 * min(
        m["plain_train_loss"], m["skip_train_loss"]
    )
    assert len(result.figures) == 1


def test_large_batches_end_sharper() -> None:
    result = run("sharp-vs-flat", quick=True)
    m = result.measurements
    assert result.held, result.text()
    assert m["large_batch_top_eigenvalue"] > 1.5 * m["small_batch_top_eigenvalue"]
    assert m["large_batch_train_loss"] <= m["small_batch_train_loss"] < 0.1
    assert len(result.figures) == 1


def test_a_curve_removes_the_barrier_of_the_line() -> None:
    result = run("mode-connectivity", quick=True)
    m = result.measurements
    assert result.held, result.text()
    assert m["line_train_loss_barrier"] > 0.5
    assert m["barrier_reduction"] > 0.9
    assert m["curve_train_loss_barrier"] < 0.1 * m["line_train_loss_barrier"]
    assert len(result.figures) == 1
