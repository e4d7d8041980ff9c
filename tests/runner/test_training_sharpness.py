"""`diagnostics.sharpness_every`: a training run records λ1 against 2/lr and reports it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from skier.config import RunConfig, load_config
from skier.errors import ConfigError
from skier.record import RunFiles, RunStore, default_store_url
from skier.runner import run_training
from skier.runner.training import _callbacks
from skier.train import SharpnessTracker


def _config(**extra: object) -> RunConfig:
    overrides = {
        "data.name": "digits", "model.hidden_sizes": [16], "train.epochs": 3,
        "train.batch_size": 256, "checkpoint.enabled": False, "optim.name": "sgd",
        "optim.lr": 0.1, **extra,
    }  # fmt: skip
    return load_config(None, [f"{k}={v}" for k, v in overrides.items()])


def test_a_run_records_the_series_the_figure_and_the_report(tmp_path: Path) -> None:
    config = _config(**{"diagnostics.sharpness_every": 2, "diagnostics.sharpness_subset": 200})
    outcome = run_training(config, out_dir=tmp_path, progress=False)
    assert outcome.status == "completed"
    steps = outcome.result.history.steps
    per_epoch = len(steps["lr"]) // 3
    assert steps["sharpness_step"] == [float(s) for s in range(2, 3 * per_epoch + 1, 2)]
    assert all(v > 0 for v in steps["sharpness"]) and set(steps["sharpness_lr"]) == {0.1}
    run = outcome.run_dir
    with (run / RunFiles.SHARPNESS_STEPS_CSV).open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "sharpness", "lr", "two_over_lr", "iterations", "converged"]
    assert [float(r["converged"]) for r in rows] == steps["sharpness_converged"]
    assert [int(r["step"]) for r in rows] == [int(s) for s in steps["sharpness_step"]]
    assert float(rows[0]["two_over_lr"]) == pytest.approx(20.0)
    png = run / RunFiles.SHARPNESS_STEPS_PNG
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    report = (run / RunFiles.REPORT).read_text()
    assert "Sharpness during training" in report and RunFiles.SHARPNESS_STEPS_PNG in report
    # The per-step series has its own file (metrics.csv holds one row per epoch), in the store.
    with RunStore(default_store_url(tmp_path)) as store:
        kinds = {a.name: a.kind for a in store.artifacts(outcome.run_id)}
    assert kinds[RunFiles.SHARPNESS_STEPS_CSV] == "csv"
    assert kinds[RunFiles.SHARPNESS_STEPS_PNG] == "figure"


def test_off_adds_no_callback(tmp_path: Path) -> None:
    from skier.data import load_data
    from skier.record.rundir import RunDir

    config = _config()
    data = load_data(config.data)
    callbacks = _callbacks(config, RunDir(tmp_path / "run"), False, None, data=data)
    assert not any(isinstance(cb, SharpnessTracker) for cb in callbacks)
    on = _config(**{"diagnostics.sharpness_every": 5})
    (tracker,) = [
        cb
        for cb in _callbacks(on, RunDir(tmp_path / "run"), False, None, data=data)
        if isinstance(cb, SharpnessTracker)
    ]
    settings = (tracker.every, tracker.subset, tracker.max_iterations, tracker.warm_iterations)
    assert settings == (5, 256, 20, 3)


def test_bad_settings_are_reported_at_once() -> None:
    with pytest.raises(ConfigError, match=r"diagnostics.sharpness_every") as caught:
        _config(**{
            "diagnostics.sharpness_every": 0,
            "diagnostics.sharpness_iterations": 1,
            "diagnostics.sharpness_tolerance": 0,
            "diagnostics.sharpness_warm_iterations": 0,
        })  # fmt: skip
    text = str(caught.value)
    assert "sharpness_iterations" in text and "sharpness_tolerance" in text
    assert "sharpness_warm_iterations" in text
