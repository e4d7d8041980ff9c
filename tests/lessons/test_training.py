"""Lessons 9-15 in their quick versions: the claims' measured inequalities hold."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from skier.lessons import LessonResult

CHANCE = math.log(10.0)


Quick = Callable[..., LessonResult]  # the shared seeds 0-4 run (conftest.py)


@pytest.mark.slow
def test_optimizers(quick: Quick) -> None:
    result = quick("optimizers")
    m = result.measurements
    assert result.held, result.text()
    finals = {k: v for k, v in m.items() if k.startswith("final_loss_")}
    assert len(finals) == 8
    assert all(v < 0.98 * m["initial_loss"] for v in finals.values())  # every one descends
    assert m["final_loss_SGD"] > 2 * max(m["final_loss_momentum"], m["final_loss_Nesterov"])
    adaptive = ("RMSprop", "Adam", "AdamW", "Adadelta", "Lookahead(Adam)")
    assert max(m[f"final_loss_{k}"] for k in adaptive) < 0.8 * m["final_loss_SGD"]
    assert list(result.figures) == ["Training loss of eight optimizers"]


@pytest.mark.slow
def test_lr_schedules(quick: Quick) -> None:
    result = quick("lr-schedules")
    m = result.measurements
    assert result.held, result.text()
    assert m["warmup0_largest_epoch_loss"] > 10 * CHANCE  # exploded (or went non-finite)
    assert m["warmup6_final_loss"] < CHANCE / 10 and m["warmup6_stopped_non_finite"] == 0.0
    annealed = max(m["final_loss_step (÷10)"], m["final_loss_cosine"], m["final_loss_one-cycle"])
    assert annealed < 0.75 * m["final_loss_constant"]
    assert list(result.figures) == ["Learning-rate schedules and warm-up"]


def test_lr_range_test(quick: Quick) -> None:
    result = quick("lr-range-test")
    m = result.measurements
    assert result.held, result.text()
    assert 1e-4 < m["suggested_lr"] < 1.0
    assert m["accuracy_at_suggestion"] > 0.85
    assert m["accuracy_at_suggestion"] > m["accuracy_100x_below"] + 0.1
    assert m["accuracy_at_suggestion"] > m["accuracy_100x_above"] + 0.1
    assert result.figures


@pytest.mark.slow
def test_early_stopping(quick: Quick) -> None:
    result = quick("early-stopping")
    m = result.measurements
    assert result.held, result.text()
    assert m["last_val_loss"] > 1.1 * m["min_val_loss"]  # the validation loss turned up
    assert m["stopped_at_epoch"] < 40
    assert m["test_loss_early_stopped"] < 0.92 * m["test_loss_last_epoch"]
    assert result.figures


@pytest.mark.slow
def test_regularization(quick: Quick) -> None:
    result = quick("regularization")
    m = result.measurements
    assert result.held, result.text()
    assert m["near_zero_L1"] > m["near_zero_none"] + 0.2
    assert m["norm_L2 (weight decay)"] < 0.8 * m["norm_none"]
    assert m["gap_dropout"] < 0.8 * m["gap_none"]
    assert result.figures


def test_input_normalization(quick: Quick) -> None:
    result = quick("input-normalization")
    m = result.measurements
    assert result.held, result.text()
    assert m["best_loss_raw"] > 1.5 * m["best_loss_standardized"]
    assert result.figures


def test_batchnorm_depth(quick: Quick) -> None:
    result = quick("batchnorm-depth")
    m = result.measurements
    assert result.held, result.text()
    assert m["ratio_plain"] < 1e-3 < 0.1 < m["ratio_batch_norm"]
    assert m["final_loss_batch_norm"] < 0.7 * m["final_loss_plain"]
    assert result.figures
