"""Plots accept what a user naturally passes (a result, its History, a run directory), and the
results draw themselves with .plot(), each as something a notebook shows as an image."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from skier.config import LRFindConfig
from skier.diagnostics.connectivity import ConnectResult
from skier.diagnostics.lr_range import LRRangeResult
from skier.diagnostics.sharpness import sharpness
from skier.history import History
from skier.lessons.base import Check, Lesson, LessonResult, Trial
from skier.plots import (
    gradient_flow_series,
    new_figure,
    plot_gradient_flow,
    plot_learning_curves,
    plot_learning_figure,
)
from skier.plots.curves import learning_result
from skier.plots.figure import DisplayAxes, SkierFigure
from skier.record.rundir import RunDir


def _history() -> History:
    return History(
        rows=[
            {"epoch": 1.0, "loss": 1.0, "error": 0.5, "val_loss": 1.2, "val_error": 0.6},
            {"epoch": 2.0, "loss": 0.5, "error": 0.2, "val_loss": 0.9, "val_error": 0.4},
        ],
        steps={
            "grad_flow_step": [1.0, 2.0],
            "grad_norm/0": [1.0, 0.5],
            "update_ratio/0": [0.1, 0.2],
        },
    )


def _labels(ax: object) -> list[str]:
    return ax.get_legend_handles_labels()[1]  # type: ignore[attr-defined]


def test_the_curves_take_a_history() -> None:
    ax = plot_learning_curves(_history())
    assert isinstance(ax, DisplayAxes)
    assert _labels(ax) == ["train", "validation"]  # no best or stop epoch to mark
    assert len(plot_learning_figure(_history()).axes) == 2


@pytest.mark.parametrize("as_text", [False, True])
def test_the_curves_take_a_run_directory(tmp_path: Path, as_text: bool) -> None:
    run = RunDir.create(tmp_path, "run1")
    run.write_metrics(_history(), sync=False)
    run.write_result(
        {"best_epoch": 2, "stop_reason": "early stopping", "test_metrics": {"test_accuracy": 0.9}}
    )
    source = str(run.path) if as_text else run.path
    curves = learning_result(source)
    assert (curves.best_epoch, curves.stop_reason) == (2, "early stopping")
    assert _labels(plot_learning_curves(source)) == [
        "train",
        "validation",
        "best (epoch 2)",
        "stop (epoch 2)",
    ]
    assert plot_learning_figure(source)._suptitle.get_text() == "test accuracy 0.9"  # type: ignore[union-attr]


def test_a_run_directory_without_result_json_draws_its_metrics(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "run2")
    run.write_metrics(_history(), sync=False)
    assert learning_result(run.path).best_epoch is None


def test_bad_sources_say_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"a run directory must be a folder; got .*missing"):
        plot_learning_curves(tmp_path / "missing")
    with pytest.raises(TypeError, match=r"a result with a \.history .*; got dict"):
        plot_learning_curves({"loss": [1.0]})  # type: ignore[arg-type]


def test_gradient_flow_takes_a_history_and_its_series_draws_itself() -> None:
    assert _labels(plot_gradient_flow(_history())) == ["0"]
    ax = gradient_flow_series(_history()).plot(metric="update_ratio")
    assert isinstance(ax, DisplayAxes) and ax.get_ylabel() == "update_ratio"


def test_lr_range_result_plots_itself() -> None:
    lrs = [10.0 ** (-5 + i / 5) for i in range(20)]
    smoothed = [2.0 - 0.05 * i for i in range(20)]
    result = LRRangeResult(
        lrs=lrs, losses=smoothed, smoothed=smoothed, suggestions={"valley": lrs[10]},
        suggestion="valley", lr=lrs[10], diverged=False, stop_step=None, best_loss=min(smoothed),
        settings=LRFindConfig(), seconds=0.1,
    )  # fmt: skip
    ax = result.plot(show_raw=False)
    assert isinstance(ax, DisplayAxes) and "valley" in _labels(ax)[1]
    given = new_figure().add_subplot()
    assert result.plot(given) is given


def test_sharpness_result_plots_itself() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    data = (torch.randn(12, 3), torch.randint(0, 2, (12,)))
    fig = sharpness(model, data).plot()
    assert isinstance(fig, SkierFigure) and len(fig.axes) == 2


def test_connect_result_plots_itself() -> None:
    ts = np.linspace(0, 1, 5)
    path = {m: np.sin(np.pi * ts) for m in ("train_loss", "train_error", "test_loss", "test_error")}
    fake = SimpleNamespace(
        ts=ts, curve=path, line=path, summary={}, plane=None, eval_split="test",
        settings=SimpleNamespace(curve="bezier"),
    )  # fmt: skip
    fig = ConnectResult.plot(fake)  # type: ignore[arg-type]
    assert isinstance(fig, SkierFigure) and len(fig.axes) == 2


def test_lesson_result_plots_its_figures() -> None:
    first, second = new_figure(), new_figure()
    trial = Trial({"x": 1.0}, [Check("x", 1.0, "> 0", True, math.inf)], {"a": first, "b": second})
    lesson = Lesson(1, "demo", "Demo", "claim", "setup", (1.0, 1.0), lambda ctx: trial)
    result = LessonResult(lesson, True, [0], [trial], 0.1)
    assert result.plot() is first and result.plot("b") is second
    with pytest.raises(ValueError, match=r"got 'c'\. Its figures: 'a', 'b'"):
        result.plot("c")


@pytest.mark.parametrize("dims", [1, 2])
def test_landscape_result_plots_itself(dims: int) -> None:
    from skier.diagnostics import landscape

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    data = (torch.randn(12, 3), torch.randint(0, 2, (12,)))
    fig = landscape(model, data, {"dims": dims, "points": 5}).plot(log_scale=True)
    assert isinstance(fig, SkierFigure) and "image/png" in fig._repr_mimebundle_()
    assert len(fig.axes) >= dims  # the curve; or the contour and the surface
