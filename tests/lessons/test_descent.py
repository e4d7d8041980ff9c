"""Lessons 1, 2 and 22 in their quick versions: the claims' measured inequalities hold."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from skier.lessons import LessonResult

Quick = Callable[..., LessonResult]  # the shared seeds 0-4 run (conftest.py)


def test_downhill(quick: Quick) -> None:
    result = quick("downhill")
    m = result.measurements
    assert result.held, result.text()
    assert m["steps_against_derivative"] == 1.0
    assert m["good_lr_steps_uphill"] == 0.0 and m["large_lr_steps_uphill"] >= 1
    assert m["small_lr_distance_to_minimum"] > 0.2 > 1e-3 > m["good_lr_distance_to_minimum"]
    assert m["momentum_final_loss"] < m["plain_final_loss"] - 1.0
    assert list(result.figures) == ["Gradient descent on a double well"]


@pytest.mark.slow
def test_sgd_noise(quick: Quick) -> None:
    result = quick("sgd-noise")
    m = result.measurements
    assert result.held, result.text()
    assert -0.6 < m["log_log_slope"] < -0.4
    # Without replacement: at m = N/2 the error is the corrected law's 0.71 of σ/√m, not σ/√m.
    assert abs(m["error_over_sigma_root_m_at_half"] - m["corrected_factor_at_half"]) < 0.05
    assert m["error_over_sigma_root_m_at_half"] < 0.85
    assert m["largest_relative_gap_to_corrected_law"] < 0.1
    assert m["mean_of_batches_error_over_expected"] < 3.0
    assert m["error_m1"] > 10 * m["error_m256"]
    assert result.figures


def test_backprop(quick: Quick) -> None:
    result = quick("backprop")
    assert result.held, result.text()
    assert result.measurements["hand_vs_autograd_max_rel"] < 1e-10
    assert result.measurements["hand_vs_finite_diff_max_rel"] < 1e-5
