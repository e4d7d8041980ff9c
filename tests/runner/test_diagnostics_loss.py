"""A run's recorded landscape and sharpness measure its own ``train.loss`` (issue 20): a Huber
regression run, checked against torch.nn.functional and a dense autograd Hessian."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from skier.config import load_config
from skier.runner import run_training
from skier.runner.diagnose import load_source, run_landscape, run_sharpness
from skier.train.hessian import seeded_subset


def test_a_huber_runs_landscape_and_sharpness_are_of_the_huber_loss(
    tmp_path: Path, dense_top_eigenvalue: Callable[..., float]
) -> None:
    overrides = {
        "data.name": "synthetic", "data.task": "regression", "data.samples": 300,
        "data.features": 5, "data.targets": 2, "data.noise": 0.5, "model.hidden_sizes": [8],
        "train.loss": "huber", "train.huber_delta": 0.5, "train.epochs": 2,
        "train.batch_size": 64,
        "diagnostics.sharpness_every": 2, "diagnostics.sharpness_subset": 64,
    }  # fmt: skip
    config = load_config(None, [f"{k}={v}" for k, v in overrides.items()])
    trained = run_training(config, out_dir=tmp_path, progress=False)
    assert trained.status == "completed"
    assert all(v > 0 for v in trained.result.history.steps["sharpness"])
    source = load_source(trained.run_dir)
    subset = seeded_subset(source.data.train, 100, 0)
    x, y = subset.inputs[0], subset.targets
    with torch.no_grad():
        huber = float(F.huber_loss(source.model(x), y.reshape(-1, 2), delta=0.5))
        mse = float(F.mse_loss(source.model(x), y.reshape(-1, 2)))
    assert abs(huber - mse) > 1e-2  # the two losses tell apart here

    settings = {"dims": 1, "points": 5, "subset": 100}
    outcome = run_landscape(source, settings, out_dir=tmp_path / "diag")
    assert outcome.summary["center_loss"] == pytest.approx(huber, rel=1e-5)

    found = run_sharpness(
        source, {"top_k": 1, "subset": 100, "trace": False, "tolerance": 1e-8,
                 "max_iterations": 200}, out_dir=tmp_path / "diag",
    )  # fmt: skip
    huber_half = functools.partial(F.huber_loss, delta=0.5)
    top = dense_top_eigenvalue(source.model, x, y.reshape(-1, 2), huber_half)
    assert found.summary["top_eigenvalue"] == pytest.approx(top, rel=1e-4)
