"""plot_lr_curve draws an LRCurve as it is: steps of lr over epochs, warm-up end and restarts."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.axes import Axes

from skier.config import ScheduleConfig
from skier.optim.schedules import LRCurve, lr_curve
from skier.plots import new_figure, plot_lr_curve, save_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _lines(ax: Axes, style: str) -> list[float]:
    return [float(line.get_xdata()[0]) for line in ax.get_lines() if line.get_linestyle() == style]


def test_draws_every_step_against_epochs() -> None:
    curve = LRCurve(steps=[1, 2, 3, 4], epochs=[0.0, 0.5, 1.0, 1.5], lrs=[1.0, 1.0, 0.5, 0.5],
                    name="step", steps_per_epoch=2)  # fmt: skip
    ax = plot_lr_curve(curve)
    lr_line = ax.get_lines()[0]
    assert list(lr_line.get_xdata()) == [0.0, 0.5, 1.0, 1.5, 2.0]  # closed at the run's end
    assert list(lr_line.get_ydata()) == [1.0, 1.0, 0.5, 0.5, 0.5]
    assert lr_line.get_drawstyle() == "steps-post"
    assert ax.get_xlabel() == "epoch" and ax.get_yscale() == "linear"
    assert "step schedule" in ax.get_title()


def test_marks_warmup_end_and_restarts() -> None:
    cfg = ScheduleConfig(name="cosine_restarts", restart_epochs=2, restart_mult=2, warmup_epochs=1)
    curve = lr_curve(cfg, lr=0.1, epochs=12, steps_per_epoch=3)
    ax = plot_lr_curve(curve, log_scale=True)
    assert _lines(ax, "--") == [1.0]
    assert _lines(ax, ":") == [3.0, 7.0]
    assert ax.get_yscale() == "log"
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["lr", "warm-up end (epoch 1)", "restart"]


def test_notes_are_shown_and_a_given_axes_is_used(tmp_path: Path) -> None:
    curve = lr_curve(ScheduleConfig(name="plateau"), lr=0.1, epochs=3, steps_per_epoch=2)
    fig = new_figure()
    ax = fig.add_subplot()
    assert plot_lr_curve(curve, ax) is ax
    assert "drawn flat" in ax.get_title()
    path = save_figure(fig, tmp_path / "lr.png")
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_empty_curve() -> None:
    ax = plot_lr_curve(LRCurve(steps=[], epochs=[], lrs=[], name="constant"))
    assert [t.get_text() for t in ax.texts] == ["no steps"]
    assert curve_summary_is_nan_safe()


def curve_summary_is_nan_safe() -> bool:
    text = LRCurve(steps=[], epochs=[], lrs=[], name="constant").summary()
    return "over 0 steps" in text


@pytest.mark.parametrize("log_scale", [False, True])
def test_zero_lr_on_a_log_axis_does_not_fail(tmp_path: Path, log_scale: bool) -> None:
    curve = lr_curve(ScheduleConfig(name="cosine"), lr=0.1, epochs=2, steps_per_epoch=1)
    curve.lrs[-1] = 0.0
    ax = plot_lr_curve(curve, log_scale=log_scale)
    save_figure(ax.figure, tmp_path / "z.png")  # type: ignore[arg-type]
