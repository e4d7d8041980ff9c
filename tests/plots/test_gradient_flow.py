from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from skier.history import History
from skier.plots import (
    gradient_flow_series,
    new_figure,
    plot_gradient_flow,
    plot_gradient_flow_figure,
    save_figure,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LAYERS = ("0.weight", "2.weight", "4.weight")


def _result(steps=(10, 20, 30), *, extra_rows=True):
    history = History()
    if extra_rows:
        history.append({"epoch": 1, "loss": 1.0})
    for i, step in enumerate(steps):
        history.add_step("grad_flow_step", step)
        for depth, layer in enumerate(LAYERS):
            history.add_step(f"grad_norm/{layer}", 10.0 ** (depth * 3 - 6) * (i + 1))
            history.add_step(f"weight_norm/{layer}", 5.0 + depth)
            history.add_step(f"update_ratio/{layer}", 1e-3 * (depth + 1))
    history.add_step("other", 1.0)  # another callback's series: ignored
    return SimpleNamespace(history=history, best_epoch=None, stop_reason=None, test_metrics={})


def _line(ax: Axes, label: str) -> Line2D:
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return line


def test_one_line_per_layer_over_steps_on_a_log_scale() -> None:
    ax = plot_gradient_flow(_result())
    assert [ln.get_label() for ln in ax.get_lines()] == list(LAYERS)  # first layer first
    assert list(_line(ax, "0.weight").get_xdata()) == [10, 20, 30]
    assert list(_line(ax, "4.weight").get_ydata()) == pytest.approx([1.0, 2.0, 3.0])
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == "step" and "gradient norm" in ax.get_title()
    first, last = _line(ax, "0.weight").get_color(), _line(ax, "4.weight").get_color()
    assert first != last  # depth is shown by colour


def test_update_ratio_panel_and_the_two_panel_figure() -> None:
    ax = plot_gradient_flow(_result(), metric="update_ratio")
    assert list(_line(ax, "2.weight").get_ydata()) == pytest.approx([2e-3] * 3)
    fig = plot_gradient_flow_figure(_result())
    grads, ratios = fig.axes
    assert "gradient norm" in grads.get_title() and "update ratio" in ratios.get_title()
    assert all(a.get_yscale() == "log" for a in fig.axes)


def test_given_axes_are_used_and_nothing_recorded_is_said() -> None:
    ax = new_figure().add_subplot()
    assert plot_gradient_flow(_result(steps=()), ax) is ax
    assert ax.get_lines() == []
    assert any("no gradient flow recorded" in t.get_text() for t in ax.texts)


def test_bad_metric_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="metric must be one of grad_norm, weight_norm, update"):
        plot_gradient_flow(_result(), metric="grad")


def test_many_layers_name_only_the_first_and_last_in_the_legend() -> None:
    history = History()
    history.add_step("grad_flow_step", 1)
    for i in range(20):
        history.add_step(f"grad_norm/{i}.weight", 1.0 + i)
    ax = plot_gradient_flow(SimpleNamespace(history=history))
    assert len(ax.get_lines()) == 20
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["0.weight", "19.weight"]


def test_series_rows_and_csv() -> None:
    series = gradient_flow_series(_result(steps=(5, 10)).history)
    assert series.steps == [5, 10] and series.layers == list(LAYERS)
    rows = series.rows()
    assert len(rows) == 6 and rows[0] == (5, "0.weight", 1e-6, 5.0, 1e-3)
    history = History()
    history.add_step("grad_flow_step", 5)
    history.add_step("grad_norm/a", 1.5)
    history.add_step("update_ratio/a", math.nan)
    csv = gradient_flow_series(history).to_csv().splitlines()
    assert csv == ["step,layer,grad_norm,weight_norm,update_ratio", "5,a,1.5,,"]


def test_save_figure_writes_a_png(tmp_path: Path) -> None:
    path = save_figure(plot_gradient_flow_figure(_result()), tmp_path / "gradient_flow.png")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
