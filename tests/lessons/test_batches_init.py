"""Lessons 3-8 in their quick versions: the claims' measured inequalities hold."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from skier.lessons import LessonResult, run

Quick = Callable[..., LessonResult]  # the shared seeds 0-4 run (conftest.py)


@pytest.mark.slow
def test_batch_size(quick: Quick) -> None:
    result = quick("batch-size")
    m = result.measurements
    assert result.held, result.text()
    assert (m["updates_per_epoch_m1"], m["updates_per_epoch_m32"]) == (1077, 34)
    assert m["updates_per_epoch_full"] == 1
    assert m["loss_decrease_ratio_m32_over_full"] > 5
    assert m["final_loss_m1"] < m["final_loss_m32"] - 0.5
    assert m["epoch_seconds_m1"] > 5 * m["epoch_seconds_m32"]
    assert m["examples_per_s_m128"] > 10 * m["examples_per_s_m1"]
    assert m["wall_time_ratio_m1_over_m32_lr05"] > 3
    assert len(result.figures) == 1


def test_mean_vs_sum(quick: Quick) -> None:
    result = quick("mean-vs-sum")
    m = result.measurements
    assert result.held, result.text()
    assert m["one_step_max_rel_difference"] < 1e-4
    assert m["curves_max_abs_difference"] < 1e-3
    assert m["final_loss_mean_same_lr"] > m["final_loss_sum"] + 0.5
    assert len(result.figures) == 1


def test_symmetry(quick: Quick) -> None:
    result = quick("symmetry")
    m = result.measurements
    assert result.held, result.text()
    # Measured after training: before it, constant and zero init are symmetric by construction.
    assert m["spread_constant_end"] < 1e-4 and m["spread_zeros_end"] < 1e-4
    assert m["spread_constant_largest_after_an_epoch"] < 1e-4
    assert m["constant_first_layer_weight_change"] > 0.05  # it trained, in lockstep
    assert m["spread_random_end"] > 0.5
    spreads = [c.what for c in result.checks if "spread" in c.what]
    assert len(spreads) == 3 and all("after 5 epochs" in what for what in spreads)
    assert m["train_accuracy_random"] > m["train_accuracy_constant"] + 0.1
    assert len(result.figures) == 1


def test_xavier_vs_he(quick: Quick) -> None:
    result = quick("xavier-vs-he")
    m = result.measurements
    assert result.held, result.text()
    assert m["std_ratio_20_over_1_xavier_tanh"] > 0.1
    assert m["std_ratio_20_over_1_xavier_relu"] < 0.01
    assert 0.4 < m["std_ratio_20_over_1_he_relu"] < 2.5
    assert len(result.figures) == 1


def test_momentum(quick: Quick) -> None:
    result = quick("momentum")
    m = result.measurements
    assert result.held, result.text()
    assert m["plain_steps"] > 4 * m["momentum_steps"]
    assert m["torch_optim_step_mismatch"] == 0
    assert len(result.figures) == 1


def test_rprop_minibatch(quick: Quick) -> None:
    result = quick("rprop-minibatch")
    m = result.measurements
    assert result.held, result.text()
    assert abs(m["rprop_final_weight"]) > 100 > 1 > abs(m["rmsprop_final_weight"])
    assert m["full_batch_final_loss"] < 0.05
    assert m["minibatch_final_loss"] > m["full_batch_final_loss"] + 0.5
    assert len(result.figures) == 1


def test_thread_count_is_put_back() -> None:
    before = torch.get_num_threads()
    run("momentum", quick=True)
    assert torch.get_num_threads() == before
