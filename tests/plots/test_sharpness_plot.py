from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from matplotlib.axes import Axes
from torch import nn

from skier.config import SharpnessConfig
from skier.diagnostics.sharpness import sharpness
from skier.plots import new_figure, save_figure
from skier.plots.sharpness import plot_hessian_spectrum, plot_sharpness

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _result(*, trace: float | None = 62.3, error: float | None = 2.1) -> SimpleNamespace:
    return SimpleNamespace(
        eigenvalues=[5.7, 3.2, -1.2],
        histories=[[4.0, 5.6, 5.7], [2.0, 3.1, 3.2, 3.2], [0.3, -1.0, -1.1, -1.2, -1.3]],
        iterations=[3, 4, 5],
        converged=[True, True, False],
        trace=trace,
        trace_std_error=error,
        trace_samples=100,
        examples=1000,
        split="train",
    )


def test_convergence_lines_one_per_eigenvalue_with_the_end_marked() -> None:
    ax = plot_sharpness(_result())
    assert isinstance(ax, Axes)
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["λ1 = 5.7", "λ2 = 3.2", "λ3 = -1.2 (not converged)"]
    lines = [ln for ln in ax.get_lines() if ln.get_label() in labels]
    assert list(lines[1].get_xdata()) == [1, 2, 3, 4]
    assert list(lines[2].get_ydata()) == pytest.approx([0.3, -1.0, -1.1, -1.2, -1.3])
    markers = [ln.get_marker() for ln in ax.get_lines() if ln.get_label() == "_nolegend_"]
    assert markers == ["o", "o", "x"]  # converged: dot; stopped at max_iterations: cross
    assert "trace ≈ 62.3 ± 2.1" in ax.get_title() and "1000 train examples" in ax.get_title()
    assert ax.get_xlabel() == "Hessian-vector product"


def test_spectrum_bars_with_the_trace_in_the_title() -> None:
    ax = plot_hessian_spectrum(_result())
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == pytest.approx([5.7, 3.2, -1.2])
    assert ax.patches[0].get_facecolor() != ax.patches[2].get_facecolor()  # negative: red
    assert ax.patches[2].get_hatch() == "//" and not ax.patches[0].get_hatch()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["λ1", "λ2", "λ3"]
    assert ax.get_title() == "top-3 Hessian eigenvalues; trace ≈ 62.3 ± 2.1"
    assert "trace not estimated" in plot_hessian_spectrum(_result(trace=None)).get_title()
    assert plot_sharpness(_result(error=None)).get_title().endswith("trace ≈ 62.3")
    exact = _result(error=0.0)
    exact.trace_method = "exact"
    assert plot_hessian_spectrum(exact).get_title().endswith("trace = 62.3 (exact)")


def test_plots_draw_on_a_given_ax_and_save_to_png(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    result = sharpness(model, (x, y), settings=SharpnessConfig(top_k=2, trace_samples=5))
    fig = new_figure(width=10, height=4)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    assert plot_sharpness(result, left) is left
    assert plot_hessian_spectrum(result, ax=right) is right
    path = save_figure(fig, tmp_path / "sharpness.png")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
