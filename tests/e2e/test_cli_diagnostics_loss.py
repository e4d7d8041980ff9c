"""`skier train` of a multi-label config with binary cross-entropy and a diagnostics section,
then `skier landscape` and `skier sharpness` on the run: every number is of the run's loss,
matched against torch.nn.functional and a dense autograd Hessian in this process (issue 20)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from skier.runner.diagnose import load_source
from skier.train.hessian import seeded_subset

pytestmark = pytest.mark.slow


def _skier(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skier", *args],
        cwd=cwd,
        env={**os.environ, "CI": "true", "PYTHONWARNINGS": "error"},
        capture_output=True,
        text=True,
        timeout=240,
    )


def _run_dir(stdout: str) -> Path:
    line = next(s for s in stdout.splitlines() if s.startswith("run directory: "))
    return Path(line.removeprefix("run directory: "))


def _summary(cwd: Path, stdout: str) -> dict:
    return json.loads((cwd / _run_dir(stdout) / "result.json").read_text())["summary"]


def _csv(path: Path, rows: int = 150) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 3)).round(3)
    noisy = x + rng.normal(scale=0.7, size=x.shape)
    lines = ["a,b,c,red,round,big"]
    for row, labels in zip(x, (noisy > 0).astype(int), strict=True):
        lines.append(",".join(map(str, [*row, *labels])))
    path.write_text("\n".join(lines) + "\n")


def test_a_multilabel_bce_runs_diagnostics_are_of_its_loss(
    tmp_path: Path, dense_top_eigenvalue: Callable[..., float]
) -> None:
    _csv(tmp_path / "labels.csv")
    config = {
        "data": {"name": "csv", "path": str(tmp_path / "labels.csv"),
                 "target": ["red", "round", "big"], "numeric_columns": ["a", "b", "c"],
                 "categorical_columns": []},
        "model": {"hidden_sizes": [8]},
        "train": {"loss": "binary_cross_entropy", "epochs": 3, "batch_size": 32},
        "diagnostics": {"sharpness_every": 2, "sharpness_subset": 50},
    }  # fmt: skip
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    trained = _skier(tmp_path, "train", "run.yaml", "--out", "runs")
    assert trained.returncode == 0, trained.stderr
    run = tmp_path / _run_dir(trained.stdout)
    assert (run / "sharpness_steps.csv").is_file()

    landscape = _skier(tmp_path, "landscape", str(run), "--dims", "1", "--points", "5",
                       "--subset", "60", "--out", "diag")  # fmt: skip
    assert landscape.returncode == 0, landscape.stderr
    sharpness = _skier(tmp_path, "sharpness", str(run), "--top-k", "1", "--subset", "60",
                       "--no-trace", "--tolerance", "1e-8", "--max-iterations", "200",
                       "--out", "diag")  # fmt: skip
    assert sharpness.returncode == 0, sharpness.stderr

    source = load_source(run)
    assert source.data.task == "multilabel"
    subset = seeded_subset(source.data.train, 60, 0)
    x, y = subset.inputs[0], subset.targets
    with torch.no_grad():
        bce = float(F.binary_cross_entropy_with_logits(source.model(x), y))
    assert _summary(tmp_path, landscape.stdout)["center_loss"] == pytest.approx(bce, rel=1e-5)
    top = dense_top_eigenvalue(source.model, x, y, F.binary_cross_entropy_with_logits)
    found = _summary(tmp_path, sharpness.stdout)["top_eigenvalue"]
    assert found == pytest.approx(top, rel=1e-4)
