"""SharpnessTracker: λ1 during training, checked against skier.diagnostics.sharpness."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from skier.config import SharpnessConfig
from skier.diagnostics import sharpness
from skier.errors import ConfigError, DataError
from skier.history import History
from skier.train import (
    Callback,
    Checkpoint,
    FitResult,
    SharpnessTracker,
    TrainState,
    fit,
    load_checkpoint,
)
from skier.train.callbacks.sharpness import SHARPNESS_KEYS

Data = tuple[torch.Tensor, torch.Tensor]
SETTINGS: dict[str, Any] = {"batch_size": 32, "seed": 7, "device": "cpu"}  # 240 rows: 8 steps


def _series(result: FitResult) -> dict[str, list[float]]:
    return {k: result.history.steps[k] for k in SHARPNESS_KEYS}


def test_lambda_equals_the_diagnostic_on_the_same_subset_and_weights(
    make_mlp: Any, clf_data: Data
) -> None:
    # Dropout and batch norm: both measure in eval mode, so they must agree with them too.
    model = make_mlp(seed=1, dropout=0.3, batch_norm=True)
    tracker = SharpnessTracker(
        clf_data,
        every=8,
        subset=100,
        seed=3,
        tolerance=1e-9,
        max_iterations=400,
        warm_iterations=400,
    )
    result = fit(
        model, clf_data, callbacks=[tracker], epochs=2, optimizer="sgd", lr=0.1, **SETTINGS
    )
    assert result.history.steps["sharpness_step"] == [8.0, 16.0]  # the last is the final weights
    settings = SharpnessConfig(
        top_k=1, subset=100, seed=3, tolerance=1e-9, max_iterations=400, trace=False
    )
    expected = sharpness(model, clf_data, settings=settings, task="classification")
    assert result.history.steps["sharpness"][-1] == pytest.approx(expected.top_eigenvalue, rel=1e-4)


def test_warm_start_needs_fewer_products(make_mlp: Any, clf_data: Data) -> None:
    tracker = SharpnessTracker(
        clf_data, every=2, tolerance=1e-4, max_iterations=200, warm_iterations=200
    )
    model = make_mlp(seed=2)
    result = fit(
        model, clf_data, callbacks=[tracker], epochs=2, optimizer="sgd", lr=0.05,
        **SETTINGS,
    )  # fmt: skip
    products = result.history.steps["sharpness_iterations"]
    assert len(products) == 8 and products[0] >= 8  # the first record starts cold
    later = products[1:]
    assert sum(later) / len(later) < products[0] / 2, products
    # A cold start at the final weights needs more than the warm record there did.
    cold = SharpnessTracker(clf_data, every=1, tolerance=1e-4, max_iterations=200)
    state = TrainState(
        model, epochs=1, task="classification", history=History(), available_keys=frozenset()
    )
    cold.on_fit_start(state)
    state.step = 16
    cold.on_batch_end(state)
    cold.on_fit_end(state, {})
    assert cold.series["sharpness"][0] == pytest.approx(
        result.history.steps["sharpness"][-1], rel=1e-3
    )
    assert cold.series["sharpness_iterations"][0] > later[-1]


def test_series_keys_steps_and_the_lr_of_each_step(make_mlp: Any, clf_data: Data) -> None:
    tracker = SharpnessTracker(clf_data, every=3, subset=50)
    schedule = {"name": "step", "interval": "step", "step_size": 1, "gamma": 0.5}
    result = fit(
        make_mlp(seed=1), clf_data, callbacks=[tracker], epochs=2, optimizer="sgd", lr=0.1,
        schedule=schedule, **SETTINGS,
    )  # fmt: skip
    series = _series(result)
    assert series["sharpness_step"] == [3.0, 6.0, 9.0, 12.0, 15.0]
    lrs = result.history.steps["lr"]
    assert series["sharpness_lr"] == [lrs[int(s) - 1] for s in series["sharpness_step"]]
    assert series["sharpness_lr"][0] == 0.1 and series["sharpness_lr"][-1] == pytest.approx(0.05)
    assert all(len(v) == 5 for v in series.values())
    assert all(math.isfinite(v) and v > 0 for v in series["sharpness"])
    assert tracker.series == series  # what it keeps for an exact resume


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_training_is_not_disturbed(make_mlp: Any, clf_data: Data, optimizer: str) -> None:
    # Dropout draws from torch's RNG every step and batch norm updates buffers in train mode:
    # a measurement that used either, or left the model in eval mode, would change the weights.
    def run(callbacks: list[Callback]) -> tuple[torch.nn.Module, FitResult]:
        model = make_mlp(seed=4, dropout=0.5, batch_norm=True)
        result = fit(
            model, clf_data, callbacks=callbacks, epochs=3, optimizer=optimizer, lr=0.05,
            **SETTINGS,
        )  # fmt: skip
        return model, result

    plain_model, plain = run([])
    tracked_model, tracked = run([SharpnessTracker(clf_data, every=2, subset=64)])
    for key, value in plain_model.state_dict().items():
        assert torch.equal(value, tracked_model.state_dict()[key]), key
    assert plain.history.column("loss") == tracked.history.column("loss")
    assert tracked_model.training  # put back in train mode between records
    assert len(tracked.history.steps["sharpness"]) == 12


def test_resume_is_exact(tmp_path: Path, make_mlp: Any, clf_data: Data, interrupt_at: Any) -> None:
    def run(directory: Path, stop: int | None, resume: Path | None = None) -> tuple[Any, Any]:
        model = make_mlp(seed=3 if resume is None else 99)
        tracker = SharpnessTracker(clf_data, every=3, subset=100, tolerance=1e-3)
        callbacks = [tracker, Checkpoint(directory, every=1), interrupt_at(stop)]
        result = fit(
            model, clf_data, callbacks=callbacks, epochs=4, optimizer="adam", lr=0.01,
            resume=resume, **SETTINGS,
        )  # fmt: skip
        return model, result

    full_model, full = run(tmp_path / "full", None)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", stop=3)  # last.pt holds epoch 2
    saved = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert saved["step"] == 16 and saved["callbacks"][0]["state"]["vector"] is not None
    shutil.copy(tmp_path / "cut" / "last.pt", tmp_path / "resume.pt")
    resumed_model, resumed = run(tmp_path / "cut", None, resume=tmp_path / "resume.pt")
    for key, value in full_model.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[key]), key
    assert _series(resumed) == _series(full)  # the warm start was carried over too
    assert len(_series(full)["sharpness_step"]) == 32 // 3


def test_a_checkpoint_from_other_settings_is_refused(clf_data: Data) -> None:
    state = SharpnessTracker(clf_data, every=3).state_dict()
    with pytest.raises(ConfigError, match=r"must match the checkpoint's every=3"):
        SharpnessTracker(clf_data, every=4).load_state_dict(state)


def test_bad_values_are_reported_at_once(clf_data: Data) -> None:
    with pytest.raises(ConfigError, match=r"5 problems") as caught:
        SharpnessTracker(
            clf_data, every=0, subset=-1, max_iterations=1, tolerance=2.0, batch_size=0
        )
    text = str(caught.value)
    assert "every must be a whole number of steps ≥ 1; got 0" in text
    assert "subset must be a whole number of examples ≥ 1, or None; got -1" in text
    assert "max_iterations must be a whole number ≥ 2; got 1" in text
    assert "tolerance must be a relative change in (0, 1); got 2.0" in text
    with pytest.raises(ConfigError, match=r"warm_iterations must be a whole number ≥ 1; got 0"):
        SharpnessTracker(clf_data, every=1, warm_iterations=0)
    with pytest.raises(ConfigError, match=r"every must be a whole number of steps ≥ 1; got True"):
        SharpnessTracker(clf_data, every=True)


def test_data_that_does_not_fit_the_task_is_refused(
    make_mlp: Any, clf_data: Data, reg_data: Data
) -> None:
    tracker = SharpnessTracker(reg_data, every=1)  # float targets, for a classification fit
    with pytest.raises(DataError, match=r"targets must be integer class labels"):
        fit(make_mlp(), clf_data, callbacks=[tracker], epochs=1, **SETTINGS)
    with pytest.raises(DataError, match=r"data must be"):
        SharpnessTracker("not data", every=1)  # type: ignore[arg-type]


def test_regression_uses_mean_squared_error(make_mlp: Any, reg_data: Data) -> None:
    model = make_mlp(seed=5, out=1)
    tracker = SharpnessTracker(
        reg_data, every=7, subset=None, tolerance=1e-9, max_iterations=400, warm_iterations=400
    )
    fit(model, reg_data, callbacks=[tracker], epochs=1, optimizer="sgd", lr=0.01, **SETTINGS)
    settings = SharpnessConfig(top_k=1, tolerance=1e-9, max_iterations=400, trace=False)
    expected = sharpness(model, reg_data, settings=settings, task="regression")
    assert tracker.series["sharpness"][-1] == pytest.approx(expected.top_eigenvalue, rel=1e-4)


def test_warm_records_are_capped_marked_and_below_the_converged_value(
    make_mlp: Any, clf_data: Data
) -> None:
    # The first record starts cold and converges within max_iterations; the later ones stop at
    # warm_iterations, are marked so, and (Rayleigh quotients) never exceed the converged λ1.
    tracker = SharpnessTracker(
        clf_data, every=2, subset=100, tolerance=1e-9, max_iterations=400, warm_iterations=2
    )
    model = make_mlp(seed=4)
    result = fit(
        model, clf_data, callbacks=[tracker], epochs=1, optimizer="sgd", lr=0.05, **SETTINGS
    )
    series = _series(result)
    assert series["sharpness_converged"][0] == 1.0 and series["sharpness_iterations"][0] < 400
    assert series["sharpness_iterations"][1:] == [2.0, 2.0, 2.0]
    assert series["sharpness_converged"][1:] == [0.0, 0.0, 0.0]
    settings = SharpnessConfig(
        top_k=1, subset=100, seed=0, tolerance=1e-9, max_iterations=400, trace=False
    )
    exact = sharpness(model, clf_data, settings=settings, task="classification").top_eigenvalue
    assert series["sharpness"][-1] <= exact * (1 + 1e-6)
    # Uncapped, every record converges and the last one is the converged value.
    loose = SharpnessTracker(
        clf_data, every=2, subset=100, tolerance=1e-9, max_iterations=400, warm_iterations=400
    )
    again = fit(
        make_mlp(seed=4), clf_data, callbacks=[loose], epochs=1, optimizer="sgd", lr=0.05,
        **SETTINGS,
    )  # fmt: skip
    assert again.history.steps["sharpness_converged"] == [1.0] * 4
    assert again.history.steps["sharpness"][-1] == pytest.approx(exact, rel=1e-4)
