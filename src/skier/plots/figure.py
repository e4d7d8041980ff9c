"""skier's figures: matplotlib Figures that show themselves in a notebook, without pyplot.

skier never draws through pyplot (no global registry, nothing to close, never ``plt.show()``),
so a notebook's inline backend, which hooks into pyplot, never sees skier's figures: left as
they are, a cell ending in one prints ``<Figure size 640x400 with 1 Axes>``. These figures and
the axes made on them carry IPython's rich display instead (``_repr_mimebundle_``): a PNG by
default — what matplotlib's inline backend sends, and what Jupyter, JupyterLab and VS Code all
render — and an SVG when asked for (``display(fig, include=["image/svg+xml"])``). Nothing is
imported from IPython and nothing is registered anywhere: a script gets the same objects and
draws nothing until it saves one.

>>> fig = new_figure()
>>> ax = fig.add_subplot()
>>> sorted(ax._repr_mimebundle_())
['image/png']
>>> fig._repr_mimebundle_()["image/png"][:8] == b"\\x89PNG\\r\\n\\x1a\\n"
True
"""

from __future__ import annotations

import io
import math
from collections.abc import Collection
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d import Axes3D

__all__ = ["SkierFigure", "figure_mimebundle", "new_figure", "panel_axes"]

PNG = "image/png"
SVG = "image/svg+xml"
# The resolution of a figure shown in a notebook (save_figure writes files at the same one).
DISPLAY_DPI = 110


def figure_mimebundle(
    fig: Figure, include: Collection[str] | None = None, exclude: Collection[str] | None = None
) -> dict[str, Any]:
    """``fig`` rendered for IPython: ``{"image/png": bytes}``, with an SVG when ``include`` asks.

    ``include`` and ``exclude`` are IPython's: the MIME types a ``display()`` call wants. The
    SVG is only drawn on request, since vector landscapes can be large and every output is
    saved in the notebook.
    """
    wanted = [PNG] if include is None else [m for m in (PNG, SVG) if m in include]
    bundle: dict[str, Any] = {}
    for mime in wanted:
        if exclude is not None and mime in exclude:
            continue
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png" if mime == PNG else "svg", dpi=DISPLAY_DPI)
        bundle[mime] = buffer.getvalue() if mime == PNG else buffer.getvalue().decode("utf-8")
    return bundle


class SkierFigure(Figure):
    """A :class:`~matplotlib.figure.Figure` that a notebook shows as an image.

    Its plain (rectilinear) and 3-D axes show the whole figure too, so a plot function that
    returns an ``Axes`` shows its drawing when it ends a cell.
    """

    def _repr_mimebundle_(
        self, include: Collection[str] | None = None, exclude: Collection[str] | None = None
    ) -> dict[str, Any]:
        return figure_mimebundle(self, include, exclude)

    def add_subplot(self, *args: Any, **kwargs: Any) -> Any:
        """As :meth:`Figure.add_subplot`; plain and 3-D axes are made displayable."""
        if "axes_class" not in kwargs and not kwargs.get("polar", False):
            cls = _DISPLAYABLE.get(kwargs.get("projection"))
            if cls is not None:
                kwargs.pop("projection", None)
                kwargs["axes_class"] = cls
        return super().add_subplot(*args, **kwargs)


class _ShowsFigure:
    """Mixin: an axes displays as the whole figure it is drawn on."""

    def _repr_mimebundle_(
        self, include: Collection[str] | None = None, exclude: Collection[str] | None = None
    ) -> dict[str, Any]:
        fig = self.get_figure(root=True)  # type: ignore[attr-defined]
        return figure_mimebundle(fig, include, exclude)


class DisplayAxes(_ShowsFigure, Axes):
    """A plain :class:`~matplotlib.axes.Axes` that a notebook shows as its figure."""


class DisplayAxes3D(_ShowsFigure, Axes3D):
    """A 3-D axes (``projection="3d"``) that a notebook shows as its figure."""


_DISPLAYABLE: dict[str | None, type[Axes]] = {
    None: DisplayAxes,
    "rectilinear": DisplayAxes,
    "3d": DisplayAxes3D,
}


def new_figure(width: float = 6.4, height: float = 4.0) -> SkierFigure:
    """A figure on its own Agg canvas, outside pyplot's registry (nothing to close).

    It shows itself in a notebook (see the module's docstring).
    """
    fig = SkierFigure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def panel_axes(count: int, *, height: float = 3.8) -> tuple[SkierFigure, list[Axes]]:
    """A new figure of ``count`` panels, two per row, and its axes in order.

    >>> fig, axes = panel_axes(3)
    >>> len(axes), len(fig.axes)
    (3, 3)
    """
    columns = min(max(count, 1), 2)
    rows = math.ceil(max(count, 1) / columns)
    fig = new_figure(width=5.4 * columns, height=height * rows)
    return fig, [fig.add_subplot(rows, columns, i + 1) for i in range(count)]
