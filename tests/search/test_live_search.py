"""cv and tune in a notebook: folds and trials shown as they finish, in one output updated in
place (a fake display target stands in for the kernel's; tests/notebook runs the real one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import skier._live as live
from skier.config import RunConfig, load_config
from skier.config.search import CrossValidationConfig, TuneConfig, parse_space
from skier.runner.cv import run_cv
from skier.runner.tune import run_tune


class FakeTarget:
    def __init__(self) -> None:
        self.bundles: list[dict[str, Any]] = []
        self.displays = 0

    def display(self, bundle: dict[str, Any]) -> None:
        self.displays += 1
        self.bundles.append(bundle)

    def update(self, bundle: dict[str, Any]) -> None:
        self.bundles.append(bundle)


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> list[FakeTarget]:
    """Every live output made while the test runs, as if in a Jupyter kernel."""
    made: list[FakeTarget] = []

    def target() -> FakeTarget:
        made.append(FakeTarget())
        return made[-1]

    monkeypatch.setattr(live, "in_jupyter_kernel", lambda: True)
    monkeypatch.setattr(live, "_IPythonTarget", target)
    return made


def _config(**extra: object) -> RunConfig:
    overrides = {
        "data.name": "synthetic", "data.samples": 240, "data.features": 6, "data.classes": 3,
        "model.hidden_sizes": [8], "train.epochs": 2, "train.batch_size": 32,
        "checkpoint.enabled": False, "record.report": False, "record.plots": False, **extra,
    }  # fmt: skip
    return load_config(None, [f"{k}={v}" for k, v in overrides.items()])


def test_cv_shows_each_fold_as_it_finishes_in_one_output(
    kernel: list[FakeTarget], tmp_path: Path
) -> None:
    out = run_cv(_config(), cv=CrossValidationConfig(folds=3, workers=1), out_dir=tmp_path)
    (target,) = kernel  # one output: the folds' fits show nothing of their own
    assert target.displays == 1
    texts = [b["text/plain"] for b in target.bundles]
    assert [t.split(",")[0] for t in texts] == ["1/3 folds", "2/3 folds", "3/3 folds", "3/3 folds"]
    assert texts[-1].endswith("done")
    assert f"mean val_loss {out.summary['value']:.4g}" in texts[-1]
    assert target.bundles[-1]["image/png"] and target.bundles[-1]["text/html"].count("<tr>") == 4


def test_cv_off_shows_nothing(kernel: list[FakeTarget], tmp_path: Path) -> None:
    run_cv(_config(), cv=CrossValidationConfig(folds=2, workers=1), out_dir=tmp_path,
           progress="off")  # fmt: skip
    assert kernel == []


def test_tune_shows_the_finished_trials_and_the_best_so_far(
    kernel: list[FakeTarget], tmp_path: Path
) -> None:
    space = parse_space({"optim.lr": {"type": "categorical", "choices": [0.05, 0.01]}})
    tune = TuneConfig(method="random", trials=3, workers=1, prune="none")
    out = run_tune(_config(), space, tune=tune, out_dir=tmp_path)
    (target,) = kernel
    assert target.displays == 1
    last = target.bundles[-1]
    best = out.summary["best"]
    assert last["text/plain"].startswith("3/3 trials")
    assert f"best val_loss {best['value']:.4g} (trial {best['number']})" in last["text/plain"]
    assert last["text/plain"].endswith("done") and last["image/png"]
    assert last["text/html"].count("<tr>") == 4  # the head and three trials
    # Each trial shows as it finishes, however quickly trials follow each other.
    shown = [b["text/plain"].split(" ")[0] for b in target.bundles]
    assert shown[:3] == ["1/3", "2/3", "3/3"]


def test_tune_off_shows_nothing(kernel: list[FakeTarget], tmp_path: Path) -> None:
    space = parse_space({"optim.lr": {"type": "categorical", "choices": [0.05]}})
    run_tune(_config(), space, tune=TuneConfig(method="random", trials=1, workers=1,
             prune="none"), out_dir=tmp_path, progress="off")  # fmt: skip
    assert kernel == []
