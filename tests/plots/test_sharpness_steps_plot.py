"""The sharpness-against-2/lr figure reads the tracker's series and computes nothing."""

from __future__ import annotations

import math
from types import SimpleNamespace

from matplotlib.figure import Figure

from skier.history import History
from skier.plots import (
    SkierFigure,
    plot_sharpness_steps,
    plot_sharpness_steps_figure,
    sharpness_series,
)


def _history(lrs: tuple[float, ...] = (0.1, 0.1, 0.05)) -> History:
    h = History()
    for i, (value, lr) in enumerate(zip((2.0, 18.0, 39.0), lrs, strict=True)):
        h.add_step("sharpness_step", 10 * (i + 1))
        h.add_step("sharpness", value)
        h.add_step("sharpness_lr", lr)
        h.add_step("sharpness_iterations", 20 - 5 * i)
        h.add_step("sharpness_converged", float(i == 0))
    return h


def test_lambda_and_the_two_over_lr_line() -> None:
    ax = plot_sharpness_steps(SimpleNamespace(history=_history()))
    lam, edge = ax.get_lines()
    assert list(lam.get_xdata()) == [10, 20, 30] and list(lam.get_ydata()) == [2.0, 18.0, 39.0]
    assert list(edge.get_ydata()) == [20.0, 20.0, 40.0]
    assert ax.get_yscale() == "linear" and "2/lr" in ax.get_title()


def test_log_scale_and_a_figure_without_pyplot() -> None:
    fig = plot_sharpness_steps_figure(_history(), log=True)
    assert isinstance(fig, SkierFigure) and isinstance(fig, Figure)
    assert fig.axes[0].get_yscale() == "log"


def test_nothing_recorded_is_said() -> None:
    ax = plot_sharpness_steps(History())
    assert not ax.get_lines() and "no sharpness recorded" in ax.texts[0].get_text()


def test_series_and_csv_with_an_unknown_lr() -> None:
    series = sharpness_series(_history(lrs=(0.1, math.nan, 0.05)))
    assert series.iterations == [20, 15, 10] and math.isnan(series.edge[1])
    lines = series.to_csv().splitlines()
    assert lines[0] == "step,sharpness,lr,two_over_lr,iterations,converged"
    assert lines[1] == "10,2.0,0.1,20.0,20,1" and lines[2] == "20,18.0,,,15,0"


def test_a_history_from_before_the_converged_flag_leaves_it_empty() -> None:
    h = History()
    for key, value in (("sharpness_step", 10), ("sharpness", 2.0), ("sharpness_lr", 0.1),
                       ("sharpness_iterations", 20)):  # fmt: skip
        h.add_step(key, value)
    series = sharpness_series(h)
    assert math.isnan(series.converged[0])
    assert series.to_csv().splitlines()[1] == "10,2.0,0.1,20.0,20,"
