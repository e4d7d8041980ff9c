"""plot_lr_range draws an LRRangeResult as it is: curves, one line per suggestion, sane limits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from matplotlib.axes import Axes

from skier.config import LRFindConfig
from skier.diagnostics.lr_range import LRRangeResult
from skier.plots import new_figure, save_figure
from skier.plots.lr_range import plot_lr_range
from skier.record.rundir import RunDir, RunFiles, json_safe

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

LRS = [10.0 ** (-6 + i / 10) for i in range(50)]
SMOOTHED = [2.0] * 20 + [2.0 - 0.08 * k for k in range(1, 23)] + [0.24 * 1.5**k for k in range(8)]


def _result(
    smoothed: list[float] = SMOOTHED,
    *,
    suggestions: dict[str, float | None] | None = None,
    suggestion: str = "valley",
    diverged: bool = False,
) -> LRRangeResult:
    lrs = LRS[: len(smoothed)]
    found = suggestions or {"valley": lrs[30], "steepest": lrs[25], "minimum": lrs[41] / 10}
    return LRRangeResult(
        lrs=lrs, losses=[s * 1.1 for s in smoothed], smoothed=smoothed, suggestions=found,
        suggestion=suggestion, lr=found[suggestion], diverged=diverged,
        stop_step=len(lrs) - 1 if diverged else None, best_loss=min(smoothed, default=math.nan),
        settings=LRFindConfig(suggestion=suggestion), seconds=0.5,
    )  # fmt: skip


def _labels(ax: Axes) -> list[str]:
    return ax.get_legend_handles_labels()[1]


def _vertical(ax: Axes) -> dict[str, tuple[float, float, str]]:
    """label -> (x, linewidth, linestyle) of each vertical line."""
    out = {}
    for line in ax.get_lines():
        xs = line.get_xdata()
        if len(xs) == 2 and xs[0] == xs[1]:
            out[str(line.get_label())] = (float(xs[0]), line.get_linewidth(), line.get_linestyle())
    return out


def test_marks_every_suggestion_and_highlights_the_chosen_one() -> None:
    result = _result()
    ax = plot_lr_range(result)
    assert isinstance(ax, Axes)
    assert _labels(ax) == [
        "loss per batch",
        "smoothed loss",
        "valley 0.001 (chosen)",
        "steepest 0.00032",
        "minimum 0.0013",
    ]
    lines = _vertical(ax)
    chosen = lines["valley 0.001 (chosen)"]
    other = lines["steepest 0.00032"]
    assert chosen[0] == LRS[30] and chosen[2] == "-"
    assert other[2] == "--" and chosen[1] > other[1]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "learning rate"
    assert ax.get_legend() is not None


def test_none_suggestions_are_not_marked_and_raw_can_be_hidden() -> None:
    result = _result(
        suggestions={"valley": None, "steepest": None, "minimum": 1e-4}, suggestion="minimum"
    )
    ax = plot_lr_range(result, show_raw=False, log_scale=False)
    assert _labels(ax) == ["smoothed loss", "minimum 0.0001 (chosen)"]
    assert ax.get_xscale() == "linear"


def test_a_diverged_curve_does_not_squash_the_descent(tmp_path: Path) -> None:
    exploded = [*SMOOTHED[:45], 50.0, 400.0, math.inf]
    result = _result(exploded, diverged=True)
    fig = new_figure()
    ax = fig.add_subplot()
    assert plot_lr_range(result, ax) is ax
    low, high = ax.get_ylim()
    assert high < 5.0  # the descent from 2.0 keeps most of the height
    assert low < 0.24 * 1.1  # the lowest loss is inside
    assert "stop: diverged at 0.05" in _labels(ax)
    path = save_figure(fig, tmp_path / "lr_range.png")
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_an_empty_result_still_draws() -> None:
    result = _result([], suggestions={"valley": None, "steepest": None, "minimum": None})
    ax = plot_lr_range(result)
    assert [t.get_text() for t in ax.texts] == ["no steps"]
    assert "0 of 100 steps" in ax.get_title()


@pytest.mark.parametrize("layout", ["lr_find run", "training run"])
def test_the_plot_takes_a_run_directory_that_holds_the_test(tmp_path: Path, layout: str) -> None:
    result = _result(diverged=True)
    run = RunDir.create(tmp_path, "run1")
    if layout == "lr_find run":
        run.write_result({"kind": "lr_find", "summary": {}, "result": result.to_dict()})
    else:  # optim.lr: auto writes the test beside the training run's files
        (run.path / RunFiles.LR_FIND_JSON).write_text(json.dumps(json_safe(result.to_dict())))
    from_dir, from_result = plot_lr_range(run.path), plot_lr_range(result)
    assert _labels(from_dir) == _labels(from_result)
    assert _vertical(from_dir) == _vertical(from_result)
    assert from_dir.get_title() == from_result.get_title()


def test_the_plot_says_what_it_cannot_draw(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"result must be an LR range test's result .* got dict"):
        plot_lr_range({"lrs": []})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"a run directory that holds one; got .*holds none"):
        plot_lr_range(tmp_path)
