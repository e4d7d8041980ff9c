"""Lessons 1, 2 and 22 in their quick versions: the claims' measured inequalities hold."""

from __future__ import annotations

import pytest

from skier.lessons import run


def test_downhill() -> None:
    result = run("downhill", quick=True)
    m = result.measurements
    assert result.held, result.text()
    assert m["steps_against_derivative"] == 1.0
    assert m["small_lr_distance_to_minimum"] > 0.2 > 1e-3 > m["good_lr_distance_to_minimum"]
    assert m["momentum_final_loss"] < m["plain_final_loss"] - 1.0
    assert list(result.figures) == ["Gradient descent on a double well"]


@pytest.mark.slow
def test_sgd_noise() -> None:
    result = run("sgd-noise", quick=True)
    assert result.held, result.text()
    assert -0.6 < result.measurements["log_log_slope"] < -0.4
    assert result.measurements["error_m1"] > 10 * result.measurements["error_m256"]
    assert result.figures


def test_backprop() -> None:
    result = run("backprop", quick=True)
    assert result.held, result.text()
    assert result.measurements["hand_vs_autograd_max_rel"] < 1e-10
    assert result.measurements["hand_vs_finite_diff_max_rel"] < 1e-5
