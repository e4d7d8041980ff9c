"""Connectivity figures draw a result: both paths, their barriers, the plane with the curve."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from skier.plots import save_figure
from skier.plots.connectivity import (
    plot_connect_plane,
    plot_connectivity,
    plot_connectivity_figure,
)


def _result(plane: bool = True) -> SimpleNamespace:
    ts = np.linspace(0, 1, 11)
    bump = np.sin(np.pi * ts)
    paths = {
        "line": {"train_loss": 0.1 + bump, "train_error": 0.4 * bump, "test_loss": 0.2 + bump,
                 "test_error": 0.05 + 0.4 * bump},
        "curve": {"train_loss": 0.1 + 0.05 * bump, "train_error": 0 * bump,
                  "test_loss": 0.2 + 0.05 * bump, "test_error": 0.05 + 0.01 * bump},
    }  # fmt: skip
    x, y = np.linspace(-1, 6, 5), np.linspace(-1, 4, 5)
    return SimpleNamespace(
        ts=ts,
        summary={},
        eval_split="test",
        settings=SimpleNamespace(curve="bezier"),
        plane={
            "x": x, "y": y, "train_loss": np.exp(-np.add.outer(y, x) / 3),
            "start": (0.0, 0.0), "end": (5.0, 0.0), "bend": (2.5, 3.0),
            "path": [[5 * t, 3 * 4 * t * (1 - t) / 2] for t in np.linspace(0, 1, 21)],
            "in_plane": True,
        } if plane else None,
        **paths,
    )  # fmt: skip


def test_paths_are_drawn_with_their_barriers() -> None:
    ax = plot_connectivity(_result(), metric="train_loss")
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["straight line (barrier 1)", "bezier curve (barrier 0.05)"]
    assert ax.get_ylabel() == "train loss"


def test_the_plane_marks_both_ends_the_bend_and_the_curve(tmp_path: Path) -> None:
    ax = plot_connect_plane(_result())
    labels = [line.get_label() for line in ax.get_lines()]
    assert {"line", "curve", "bend"} <= set(labels)
    fig = plot_connectivity_figure(_result())
    assert len([a for a in fig.axes if a.get_label() != "<colorbar>"]) == 3
    assert save_figure(fig, tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")
    assert len(plot_connectivity_figure(_result(plane=False)).axes) == 2
    with pytest.raises(ValueError, match="plane_points > 0"):
        plot_connect_plane(_result(plane=False))
