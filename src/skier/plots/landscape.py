"""Figures of loss landscapes: 1-D curves, contour and filled-contour maps, 3-D surfaces, and the
same plane on two mini-batches side by side. They draw a :class:`LandscapeResult`; they compute
nothing but what a picture needs (log of the values, contour levels).

>>> from skier.plots.landscape import plot_landscape_figure
>>> fig = plot_landscape_figure(result, log_scale=True)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from skier.plots.curves import new_figure

__all__ = [
    "plot_landscape_1d",
    "plot_landscape_batches",
    "plot_landscape_contour",
    "plot_landscape_figure",
    "plot_landscape_surface",
]

_MIN_COLOR = "tab:red"
_CENTER_COLOR = "black"


class _Surface(Protocol):
    name: str
    loss: np.ndarray
    error: np.ndarray | None


class LandscapeLike(Protocol):
    """What the plots read (``skier.diagnostics.landscape.LandscapeResult`` has these)."""

    dims: int
    direction: str
    alphas: np.ndarray
    betas: np.ndarray | None
    surface: Any
    batches: list[Any]
    labels: tuple[str, str] | None

    @property
    def minimum(self) -> dict[str, float]: ...


def _values(loss: np.ndarray, log_scale: bool) -> np.ndarray:
    values = np.where(np.isfinite(loss), loss, np.nan)
    if log_scale:
        # log10 of a loss: positive for cross-entropy and MSE; clip exact zeros.
        values = np.log10(np.clip(values, 1e-12, None))
    return values


def _axis_label(result: LandscapeLike, axis: str) -> str:
    if result.direction in ("init", "run"):
        return "α (interpolation)"
    if result.direction == "hessian":
        return f"{axis} (Hessian eigenvector {1 if axis == 'α' else 2})"
    return f"{axis} (filter-normalized direction)" if axis else axis


def plot_landscape_1d(
    result: LandscapeLike,
    ax: Axes | None = None,
    *,
    log_scale: bool = False,
    show_error: bool = True,
) -> Axes:
    """Loss along α (left axis) and error (right axis, dashed); the minimum is marked; the
    ends of an interpolation are labelled."""
    if result.dims != 1:
        raise ValueError(f"result must be a 1-D landscape for this plot; got dims={result.dims}.")
    ax = ax if ax is not None else new_figure().add_subplot()
    surface = result.surface
    ax.plot(result.alphas, surface.loss, color="tab:blue", label="loss")
    for batch, style in zip(result.batches, (":", "-."), strict=False):
        ax.plot(result.alphas, batch.loss, color="tab:blue", ls=style, alpha=0.7, label=batch.name)
    if log_scale:
        ax.set_yscale("log")
    best = result.minimum
    ax.plot([best["alpha"]], [best["loss"]], "*", color=_MIN_COLOR, ms=12, label="minimum")
    ax.set_xlabel(_axis_label(result, "α"))
    ax.set_ylabel(f"loss ({surface.name})")
    if result.labels:
        for x, label in zip((0.0, 1.0), result.labels, strict=True):
            ax.axvline(x, color="0.6", lw=0.8, ls="--")
            ax.annotate(
                label, (x, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom",
                fontsize=8,
            )  # fmt: skip
    handles, labels = ax.get_legend_handles_labels()
    if show_error and surface.error is not None:
        twin = ax.twinx()
        (line,) = twin.plot(result.alphas, surface.error, color="tab:orange", ls="--")
        twin.set_ylabel("error")
        twin.set_ylim(0.0, max(1.0, float(np.nanmax(surface.error))))
        handles.append(line)
        labels.append("error")
    ax.legend(handles, labels, loc="upper center", fontsize=8)
    return ax


def _grid_values(result: LandscapeLike, loss: np.ndarray, log_scale: bool) -> tuple[Any, ...]:
    if result.dims != 2 or result.betas is None:
        raise ValueError(f"result must be a 2-D landscape for this plot; got dims={result.dims}.")
    x, y = np.meshgrid(result.alphas, result.betas)
    return x, y, _values(loss, log_scale)


def plot_landscape_contour(
    result: LandscapeLike,
    ax: Axes | None = None,
    *,
    filled: bool = False,
    log_scale: bool = False,
    levels: int = 30,
    surface: Any = None,
    norm: Normalize | None = None,
    colorbar: bool = True,
) -> Axes:
    """Contour lines (or a filled contour map with a colour bar) of the loss over the plane;
    the minimum (star) and the model itself (cross at the origin) are marked.

    ``surface`` picks another surface of the result (a mini-batch's); ``norm`` shares one
    colour scale between several maps.
    """
    ax = ax if ax is not None else new_figure(5.2, 4.4).add_subplot()
    surface = surface if surface is not None else result.surface
    x, y, z = _grid_values(result, surface.loss, log_scale)
    finite = z[np.isfinite(z)]
    if finite.size == 0:
        ax.text(0.5, 0.5, "no finite loss", ha="center", transform=ax.transAxes)
        return ax
    if finite.min() == finite.max():
        ax.text(0.5, 0.5, f"constant loss {finite.min():.4g}", ha="center", transform=ax.transAxes)
        return ax
    norm = norm or Normalize(float(finite.min()), float(finite.max()))
    low = float(finite.min()) if norm.vmin is None else float(norm.vmin)
    high = float(finite.max()) if norm.vmax is None else float(norm.vmax)
    bounds = np.linspace(low, high, levels)
    if filled:
        mappable = ax.contourf(x, y, z, levels=bounds, cmap="viridis", norm=norm, extend="max")
        if colorbar and ax.figure is not None:
            ax.figure.colorbar(mappable, ax=ax, label="log10 loss" if log_scale else "loss")
    else:
        lines = ax.contour(x, y, z, levels=bounds, cmap="viridis", norm=norm, linewidths=0.8)
        ax.clabel(lines, np.asarray(lines.levels)[::5], inline=True, fontsize=7, fmt="%.3g")
    row, col = np.unravel_index(int(np.nanargmin(np.where(np.isfinite(z), z, np.nan))), z.shape)
    ax.plot([x[row, col]], [y[row, col]], "*", color=_MIN_COLOR, ms=12, label="minimum")
    ax.plot([0.0], [0.0], "+", color=_CENTER_COLOR, ms=10, mew=1.5, label="model")
    ax.set_xlabel(_axis_label(result, "α"))
    ax.set_ylabel(_axis_label(result, "β"))
    ax.set_title(surface.name, fontsize=9)
    ax.set_aspect("equal", adjustable="box")
    return ax


def plot_landscape_surface(
    result: LandscapeLike, ax: Any = None, *, log_scale: bool = False
) -> Any:
    """The loss as a 3-D surface (``ax`` must be a 3-D axes; one is made if not given)."""
    if ax is None:
        ax = new_figure(5.6, 4.6).add_subplot(projection="3d")
    if getattr(ax, "name", "") != "3d":
        raise ValueError("ax must be a 3-D axes: fig.add_subplot(projection='3d').")
    x, y, z = _grid_values(result, result.surface.loss, log_scale)
    z = np.ma.masked_invalid(z)
    ax.plot_surface(x, y, z, cmap="viridis", linewidth=0, antialiased=True, rstride=1, cstride=1)
    ax.set_xlabel("α")
    ax.set_ylabel("β")
    ax.set_zlabel("log10 loss" if log_scale else "loss")
    ax.view_init(elev=35, azim=-60)
    return ax


def plot_landscape_batches(result: LandscapeLike, *, log_scale: bool = False) -> Figure:
    """The plane on the whole split and on each mini-batch, side by side with one colour scale
    (the course's "loss for the first batch / the second batch")."""
    if not result.batches:
        raise ValueError("result must hold per-batch surfaces; run it with per_batch: true.")
    surfaces = [result.surface, *result.batches]
    values = np.concatenate([_values(s.loss, log_scale).ravel() for s in surfaces])
    values = values[np.isfinite(values)]
    norm = Normalize(float(values.min()), float(values.max())) if values.size else None
    fig = new_figure(4.2 * len(surfaces), 4.2)
    axes = fig.subplots(1, len(surfaces))
    axes = list(np.atleast_1d(axes))
    for ax, surface in zip(axes, surfaces, strict=True):
        plot_landscape_contour(
            result, ax, filled=True, log_scale=log_scale, surface=surface, norm=norm,
            colorbar=False,
        )  # fmt: skip
    if norm is not None:
        from matplotlib.cm import ScalarMappable

        mappable = ScalarMappable(norm=norm, cmap="viridis")
        fig.colorbar(mappable, ax=axes, label="log10 loss" if log_scale else "loss")
    return fig


def plot_landscape_figure(result: LandscapeLike, *, log_scale: bool = False) -> Figure:
    """The standard figure: a 1-D curve, or for a plane its contour, filled contour and 3-D
    surface side by side."""
    if result.dims == 1:
        fig = new_figure(6.4, 4.0)
        plot_landscape_1d(result, fig.add_subplot(), log_scale=log_scale)
        return fig
    fig = new_figure(15.0, 4.6)
    plot_landscape_contour(result, fig.add_subplot(1, 3, 1), log_scale=log_scale)
    plot_landscape_contour(result, fig.add_subplot(1, 3, 2), filled=True, log_scale=log_scale)
    plot_landscape_surface(result, fig.add_subplot(1, 3, 3, projection="3d"), log_scale=log_scale)
    return fig
