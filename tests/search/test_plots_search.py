"""The model-selection figures draw what they are given and write PNGs."""

from __future__ import annotations

from pathlib import Path

import pytest

from skier.plots import save_figure
from skier.plots.search import (
    plot_cv_figure,
    plot_optimization_history,
    plot_parallel_coordinates,
    plot_param_importances,
    plot_slices_figure,
    plot_table_figure,
)
from skier.search import FoldResult, chosen_metrics, mean_curve

SUMMARY = {
    "direction": "minimize",
    "space": {
        "optim.lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
        "model.hidden_sizes": {"type": "categorical", "choices": [[8], [16, 8]]},
    },
    "trials": [
        {"number": 0, "state": "complete", "value": 0.5,
         "params": {"optim.lr": 0.01, "model.hidden_sizes": "[8]"}},
        {"number": 1, "state": "pruned", "value": 0.9,
         "params": {"optim.lr": 0.001, "model.hidden_sizes": "[16, 8]"}},
        {"number": 2, "state": "complete", "value": 0.3,
         "params": {"optim.lr": 0.05, "model.hidden_sizes": "[16, 8]"}},
        {"number": 3, "state": "fail", "value": None, "params": {"optim.lr": 0.1}},
    ],
    "importances": {"optim.lr": 0.8, "model.hidden_sizes": 0.2},
}  # fmt: skip


def test_search_figures(tmp_path: Path) -> None:
    ax = plot_optimization_history(SUMMARY)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["best so far"].get_ydata()) == [0.5, 0.3]  # the running minimum
    assert [t.get_text() for t in plot_param_importances(SUMMARY).get_yticklabels()] == [
        "model.hidden_sizes", "optim.lr",
    ]  # fmt: skip
    parallel = plot_parallel_coordinates(SUMMARY)
    assert len(parallel.get_lines()) == 2 + 3  # two complete trials, three axes
    slices = plot_slices_figure(SUMMARY)
    assert len(slices.axes) == 2 and slices.axes[0].get_xscale() == "log"
    for name, figure in (
        ("history", ax.figure), ("slices", slices),
        ("table", plot_table_figure(["trial", "value"], [[0, "0.5"], [2, "0.3"]])),
    ):  # fmt: skip
        path = save_figure(figure, tmp_path / f"{name}.png")
        assert path.read_bytes()[:4] == b"\x89PNG"


def test_cv_figure_overlays_folds_and_their_mean(tmp_path: Path) -> None:
    folds = []
    for number, values in ((1, [0.9, 0.6, 0.7]), (2, [0.8, 0.5])):
        history = [{"epoch": float(i + 1), "val_loss": v} for i, v in enumerate(values)]
        metrics = chosen_metrics(history, 2)
        folds.append(
            FoldResult(number, 1, number, f"r{number}", "", "completed", len(values), 2,
                       "val_loss", None, metrics, history)
        )  # fmt: skip
    figure = plot_cv_figure(folds, {"val_loss": mean_curve(folds, "val_loss")})
    (ax,) = figure.axes
    mean = next(line for line in ax.get_lines() if line.get_label() == "mean")
    assert list(mean.get_ydata()) == pytest.approx([0.85, 0.55, 0.7])
    assert save_figure(figure, tmp_path / "cv.png").is_file()
