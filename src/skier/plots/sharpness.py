"""Sharpness plots: how the eigenvalue estimates converged, and the top Hessian eigenvalues as bars.

They read a :class:`skier.diagnostics.sharpness.SharpnessResult` (any object with its fields
will do) and compute nothing; this module imports no torch, so the read side stays light.

>>> from types import SimpleNamespace
>>> result = SimpleNamespace(
...     eigenvalues=[5.7, -1.2], histories=[[4.0, 5.6, 5.7], [0.3, -1.1, -1.2]],
...     iterations=[3, 3], converged=[True, False], trace=62.3, trace_std_error=2.1,
...     trace_samples=100, examples=1000, split="train")
>>> plot_sharpness(result).get_legend_handles_labels()[1]
['λ1 = 5.7', 'λ2 = -1.2 (not converged)']
>>> plot_hessian_spectrum(result).get_title()
'top-2 Hessian eigenvalues; trace ≈ 62.3 ± 2.1'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from skier.plots.curves import new_figure

__all__ = ["SharpnessLike", "plot_hessian_spectrum", "plot_sharpness", "plot_sharpness_figure"]

_POSITIVE = "tab:blue"
_NEGATIVE = "tab:red"  # negative curvature: a saddle direction, worth seeing at a glance


class SharpnessLike(Protocol):
    """What the sharpness plots read (``SharpnessResult`` has it)."""

    @property
    def eigenvalues(self) -> Sequence[float]: ...

    @property
    def histories(self) -> Sequence[Sequence[float]]: ...

    @property
    def converged(self) -> Sequence[bool]: ...

    @property
    def trace(self) -> float | None: ...

    @property
    def trace_std_error(self) -> float | None: ...

    @property
    def trace_samples(self) -> int: ...

    @property
    def examples(self) -> int: ...

    @property
    def split(self) -> str: ...


def _trace_text(result: SharpnessLike) -> str:
    if result.trace is None:
        return "trace not estimated"
    if getattr(result, "trace_method", None) == "exact":  # the Gauss-Newton trace, no probes
        return f"trace = {result.trace:.4g} (exact)"
    if result.trace_std_error is None:
        return f"trace ≈ {result.trace:.4g}"
    return f"trace ≈ {result.trace:.4g} ± {result.trace_std_error:.2g}"


def _label(i: int, value: float, converged: bool) -> str:
    return f"λ{i + 1} = {value:.4g}" + ("" if converged else " (not converged)")


def plot_sharpness(result: SharpnessLike, ax: Axes | None = None) -> Axes:
    """The eigenvalue estimate after each Hessian-vector product, one line per eigenvalue.

    The last point of each line is a filled circle when that eigenvalue converged and a cross
    when it stopped at ``max_iterations``; the legend gives the values and the trace.

    >>> ax = plot_sharpness(sharpness(model, data))   # doctest: +SKIP
    """
    if ax is None:
        ax = new_figure().add_subplot()
    pairs = zip(result.eigenvalues, result.histories, result.converged, strict=True)
    # Lanczos estimates every pair from one run of products (pair i from the i-th product on);
    # power iteration runs one after the other, each drawn from its own first product.
    settings = getattr(result, "settings", None)
    shared = getattr(settings, "method", "power") == "lanczos"
    total = max((len(h) for h in result.histories), default=0)
    for i, (value, history, converged) in enumerate(pairs):
        first = total - len(history) + 1 if shared else 1
        steps = list(range(first, first + len(history)))
        (line,) = ax.plot(steps, list(history), linewidth=1.4, label=_label(i, value, converged))
        if history:
            ax.plot(
                steps[-1:], list(history[-1:]), linestyle="none", color=line.get_color(),
                marker="o" if converged else "x", markersize=7, label="_nolegend_",
            )  # fmt: skip
    if not result.eigenvalues:
        ax.text(0.5, 0.5, "no eigenvalues", ha="center", va="center", transform=ax.transAxes)
    ax.axhline(0.0, color="0.6", linewidth=0.8, zorder=0)
    ax.set_xlabel("Hessian-vector product")
    ax.set_ylabel("eigenvalue estimate (vᵀHv)")
    ax.set_title(
        f"Hessian eigenvalues ({result.examples} {result.split} examples); {_trace_text(result)}",
        fontsize="medium",
    )
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", title="● converged  × stopped", title_fontsize="small")
    return ax


def plot_hessian_spectrum(result: SharpnessLike, ax: Axes | None = None) -> Axes:
    """The top-k eigenvalues as bars (largest magnitude first), the trace in the title.

    Negative eigenvalues are red; bars of eigenvalues that did not converge are hatched.

    >>> ax = plot_hessian_spectrum(sharpness(model, data, settings=SharpnessConfig(top_k=5)))
    ...                                                                  # doctest: +SKIP
    """
    if ax is None:
        ax = new_figure().add_subplot()
    values = list(result.eigenvalues)
    positions = list(range(1, len(values) + 1))
    bars = ax.bar(
        positions, values, color=[_POSITIVE if v >= 0 else _NEGATIVE for v in values],
        edgecolor="black", linewidth=0.6,
    )  # fmt: skip
    for bar, converged in zip(bars, result.converged, strict=True):
        if not converged:
            bar.set_hatch("//")
    ax.bar_label(bars, labels=[f"{v:.3g}" for v in values], fontsize="small", padding=2)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(positions, [f"λ{i}" for i in positions])
    ax.set_xlabel("eigenvalue (by magnitude)")
    ax.set_ylabel("Hessian eigenvalue")
    ax.set_title(f"top-{len(values)} Hessian eigenvalues; {_trace_text(result)}")
    ax.grid(True, axis="y", alpha=0.3)
    return ax


def plot_sharpness_figure(result: SharpnessLike) -> Figure:
    """The power iterations and the spectrum side by side."""
    fig = new_figure(width=10.4, height=4.0)
    plot_sharpness(result, fig.add_subplot(1, 2, 1))
    plot_hessian_spectrum(result, fig.add_subplot(1, 2, 2))
    return fig
