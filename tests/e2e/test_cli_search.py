"""``skier cv`` and ``skier tune`` through ``python -m skier``, as a user runs them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

Runner = Any

CONFIG = """\
data: {name: synthetic, samples: 240, features: 6, classes: 3}
model: {name: mlp, hidden_sizes: [8]}
train: {epochs: 3, batch_size: 32}
early_stopping: {enabled: true, patience: 1}
checkpoint: {enabled: false}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(CONFIG)
    return path


def _clean_error(proc: Any, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skier: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.slow
def test_cv_in_two_worker_processes(skier_cli: Runner, config: Path, tmp_path: Path) -> None:
    proc = skier_cli("cv", str(config), "--folds", "2", "--workers", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.count("fold ") >= 2 and "done: 2 folds (2-fold), val_loss " in out
    assert "chosen epochs per fold: " in out
    run_dir = Path(out.split("run directory: ")[1].splitlines()[0])
    if not run_dir.is_absolute():
        run_dir = tmp_path / run_dir
    assert (run_dir / "report.html").is_file() and (run_dir / "cv_curves.png").is_file()


@pytest.mark.slow
def test_tune_grid_then_train_the_best(skier_cli: Runner, config: Path, tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(
        "optim.lr: {type: categorical, choices: [0.003, 0.03]}\n"
        "model.hidden_sizes: {type: categorical, choices: [[8], [16, 8]]}\n"
        "train.epochs: {type: int, low: 2, high: 2}\n"
    )
    proc = skier_cli(
        "tune", str(config), "--space", str(space), "--method", "grid", "--workers", "1",
        "--train-best", "-q",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "done: 4 trials in the study (4 complete)" in out
    assert "best trial " in out and "trained the best config: run " in out
    best = Path(out.split("\nbest config: ")[1].splitlines()[0])
    best = best if best.is_absolute() else tmp_path / best
    saved = yaml.safe_load(best.read_text())
    assert saved["optim"]["lr"] in (0.003, 0.03)
    assert saved["model"]["hidden_sizes"] in ([8], [16, 8])
    assert f"train it: skier train {best.relative_to(tmp_path)}" in out or str(best) in out
    for name in ("report.html", "trials.csv", "optimization_history.png", "slices.png"):
        assert (best.parent / name).is_file(), name


def test_a_bad_space_is_one_line_exit_2(skier_cli: Runner, config: Path, tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("optim.lr: {type: float, low: 0.1, high: 0.001, log: true}\n")
    proc = skier_cli("tune", str(config), "--space", str(space))
    _clean_error(proc, f"{space}: optim.lr must have low <= high; got low=0.1, high=0.001.")
    assert not (tmp_path / "runs").exists()  # nothing written


def test_a_misspelt_objective_is_one_line_exit_2(
    skier_cli: Runner, config: Path, tmp_path: Path
) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("optim.lrr: {type: float, low: 0.001, high: 0.1}\n")
    proc = skier_cli("tune", str(config), "--space", str(space), "--objective", "val_los")
    _clean_error(proc, "--objective must be one of", "Did you mean 'val_loss'?")
    proc = skier_cli("tune", str(config), "--space", str(space))
    _clean_error(proc, "optim.lrr is not a known setting. Did you mean 'lr'?")
