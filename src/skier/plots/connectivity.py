"""Figures of mode connectivity: loss and error along t for the straight line and the trained
curve, and the plane through the two endpoints and the bend with the curve drawn on it.

>>> from skier.plots.connectivity import plot_connectivity_figure
>>> fig = plot_connectivity_figure(result)   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from skier.plots.curves import new_figure

__all__ = ["plot_connect_plane", "plot_connectivity", "plot_connectivity_figure"]

_LINE = "tab:gray"
_CURVE = "tab:blue"


class ConnectLike(Protocol):
    """What the plots read (``skier.diagnostics.connectivity.ConnectResult`` has these)."""

    ts: np.ndarray
    curve: dict[str, np.ndarray]
    line: dict[str, np.ndarray]
    summary: dict[str, Any]
    plane: dict[str, Any] | None
    eval_split: str
    settings: Any


def plot_connectivity(
    result: ConnectLike, ax: Axes | None = None, *, metric: str = "train_loss"
) -> Axes:
    """``metric`` (``train_loss``, ``train_error``, ``test_loss``, ``test_error``) along t, for
    the straight line and the curve; the barrier heights in the legend."""
    ax = ax if ax is not None else new_figure().add_subplot()
    label = metric.replace("test_", f"{result.eval_split}_").replace("_", " ")
    for name, values, color in (
        ("straight line", result.line[metric], _LINE),
        (f"{result.settings.curve} curve", result.curve[metric], _CURVE),
    ):
        ends = (values[0] + values[-1]) / 2
        barrier = float(np.nanmax(values) - ends)
        ax.plot(result.ts, values, color=color, label=f"{name} (barrier {barrier:.3g})")
    ax.set_xlabel("t (0: run A, 1: run B)")
    ax.set_ylabel(label)
    if metric.endswith("error"):
        ax.set_ylim(bottom=0.0)
    ax.legend(fontsize=8)
    return ax


def plot_connect_plane(result: ConnectLike, ax: Axes | None = None) -> Axes:
    """Train loss (log colour scale) on the plane through both endpoints and the bend, with the
    straight line and the curve drawn on it."""
    if result.plane is None:
        raise ValueError("result must hold a plane; run it with plane_points > 0.")
    ax = ax if ax is not None else new_figure(5.6, 4.6).add_subplot()
    plane = result.plane
    x, y = np.meshgrid(np.asarray(plane["x"]), np.asarray(plane["y"]))
    z = np.asarray(plane["train_loss"], dtype=float)
    finite = z[np.isfinite(z) & (z > 0)]
    if finite.size and finite.min() < finite.max():
        low, high = float(finite.min()), float(finite.max())
        norm: Normalize = LogNorm(low, high)
        levels: Any = np.geomspace(low, high, 30)
    else:
        norm, levels = Normalize(), 30
    mappable = ax.contourf(
        x, y, np.where(z > 0, z, np.nan), levels=levels, cmap="viridis", norm=norm
    )
    if ax.figure is not None:
        ax.figure.colorbar(mappable, ax=ax, label="train loss")
    start, end, bend = plane["start"], plane["end"], plane["bend"]
    path = np.asarray(plane["path"])
    ax.plot([start[0], end[0]], [start[1], end[1]], "--", color="white", lw=1.2, label="line")
    ax.plot(path[:, 0], path[:, 1], color="tab:red", lw=2, label="curve")
    ax.plot([start[0], end[0]], [start[1], end[1]], "o", color="white", mec="black", ms=8)
    ax.plot([bend[0]], [bend[1]], "s", color="tab:red", mec="black", ms=7, label="bend")
    ax.annotate("A", start, textcoords="offset points", xytext=(-12, -12), color="white")
    ax.annotate("B", end, textcoords="offset points", xytext=(6, -12), color="white")
    title = "plane through A, B and the bend"
    if not plane.get("in_plane", True):
        title += " (curve projected)"
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal", adjustable="box")
    ax.legend(fontsize=8, loc="upper right")
    return ax


def plot_connectivity_figure(result: ConnectLike) -> Figure:
    """Train loss and held-out error along t (line vs curve), and the plane when measured."""
    panels = 3 if result.plane is not None else 2
    fig = new_figure(5.0 * panels, 4.2)
    plot_connectivity(result, fig.add_subplot(1, panels, 1), metric="train_loss")
    plot_connectivity(result, fig.add_subplot(1, panels, 2), metric="test_error")
    if result.plane is not None:
        plot_connect_plane(result, fig.add_subplot(1, panels, 3))
    return fig
