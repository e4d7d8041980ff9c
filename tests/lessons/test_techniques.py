"""Lessons 24 (accumulation is the large batch), 25 (SAM finds flatter minima) and 26 (SWA sits
in a flatter, wider region than its iterates), quick versions: each claim holds, by what it
measures, and its figure is drawn."""

from __future__ import annotations

from collections.abc import Callable

from skier.lessons import LessonResult

Quick = Callable[..., LessonResult]  # the shared seeds 0-4 run (conftest.py)


def test_accumulated_micro_batches_are_the_large_batch(quick: Quick) -> None:
    result = quick("accumulation-is-the-large-batch")
    m = result.measurements
    assert result.held, result.text()
    assert m["loss_gap"] < 1e-4 and m["weight_gap"] < 1e-4
    # the small-batch run is a different run: the comparison can tell runs apart
    assert m["small_batch_gap"] > 0.05
    assert m["final_loss_small"] != m["final_loss_large"]
    assert "Training loss: accumulated, large and small batches" in result.figures


def test_sam_finds_a_flatter_minimum_at_matched_training_loss(quick: Quick) -> None:
    result = quick("sam-finds-flatter-minima")
    m = result.measurements
    assert result.held, result.text()
    assert m["sgd_train_loss"] < 0.01 and m["sam_train_loss"] < 0.01
    assert m["sam_lambda1"] < 0.7 * m["sgd_lambda1"]
    assert "SAM against SGD: training loss and sharpness" in result.figures


def test_swa_sits_in_a_flatter_wider_region_than_its_iterates(quick: Quick) -> None:
    result = quick("swa-finds-flatter-region")
    m = result.measurements
    assert result.held, result.text()
    # flatter and wider than every iterate it was compared with, not only the last one
    assert m["swa_lambda1"] < 0.8 * m["iterates_lambda1_min"]
    assert m["swa_width"] > m["iterates_width_max"] > 0
    assert m["swa_test_error"] < m["iterates_test_error_min"]
    assert "SWA against the SGD iterates it averages: valley and sharpness" in result.figures
