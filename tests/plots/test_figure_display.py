"""skier's figures and the axes its plots return show themselves in a notebook, without pyplot."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
from matplotlib.axes import Axes

from skier.history import History
from skier.plots import SkierFigure, new_figure, plot_learning_curves, plot_learning_figure
from skier.plots.figure import DisplayAxes, DisplayAxes3D, figure_mimebundle

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _result() -> SimpleNamespace:
    h = History()
    h.extend(
        [{"epoch": 1, "loss": 1.0, "val_loss": 1.2}, {"epoch": 2, "loss": 0.5, "val_loss": 0.9}]
    )
    return SimpleNamespace(history=h, best_epoch=2, stop_reason=None, test_metrics={})


def test_a_figure_displays_as_png() -> None:
    fig = plot_learning_figure(_result())
    assert isinstance(fig, SkierFigure)
    bundle = fig._repr_mimebundle_()
    assert list(bundle) == ["image/png"]
    assert bundle["image/png"].startswith(PNG_MAGIC)


def test_an_axes_a_plot_returns_displays_as_its_whole_figure() -> None:
    ax = plot_learning_curves(_result())
    assert isinstance(ax, Axes) and isinstance(ax, DisplayAxes)
    assert ax._repr_mimebundle_()["image/png"] == figure_mimebundle(ax.figure)["image/png"]


def test_svg_only_when_asked_and_exclude_is_honoured() -> None:
    fig = new_figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    bundle = fig._repr_mimebundle_(include=["image/png", "image/svg+xml"])
    assert bundle["image/svg+xml"].lstrip().startswith("<?xml")
    assert bundle["image/png"].startswith(PNG_MAGIC)
    assert list(fig._repr_mimebundle_(exclude=["image/png"])) == []


def test_3d_and_subplots_axes_are_displayable_and_others_untouched() -> None:
    fig = new_figure()
    assert isinstance(fig.add_subplot(projection="3d"), DisplayAxes3D)
    assert fig.add_subplot(projection="3d").name == "3d"
    assert all(isinstance(a, DisplayAxes) for a in new_figure().subplots(1, 2))
    polar = new_figure().add_subplot(projection="polar")
    assert polar.name == "polar" and not hasattr(polar, "_repr_mimebundle_")


def test_ipython_formats_the_figure_as_an_image() -> None:
    formatters = pytest.importorskip("IPython.core.formatters", reason="IPython is not installed")
    data, _ = formatters.DisplayFormatter().format(plot_learning_curves(_result()))
    assert data["image/png"].startswith(PNG_MAGIC)
    assert data["text/plain"].startswith("<DisplayAxes")


def test_plotting_never_imports_pyplot() -> None:
    code = (
        "import sys\n"
        "from types import SimpleNamespace\n"
        "from skier.history import History\n"
        "from skier.plots import plot_learning_figure\n"
        "h = History(); h.extend([{'epoch': 1, 'loss': 1.0}])\n"
        "fig = plot_learning_figure(SimpleNamespace(history=h, best_epoch=None,"
        " stop_reason=None, test_metrics={}))\n"
        "fig._repr_mimebundle_()\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
