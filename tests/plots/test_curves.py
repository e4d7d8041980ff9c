from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.lines import Line2D

from skier.history import History
from skier.plots import new_figure, plot_learning_curves, plot_learning_figure, save_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAN = math.nan


def _result(rows, *, best_epoch=None, stop_reason=None, test_metrics=None, **extra):
    history = History()
    history.extend(rows)
    return SimpleNamespace(
        history=history,
        best_epoch=best_epoch,
        stop_reason=stop_reason,
        test_metrics=test_metrics or {},
        **extra,
    )


def _classification(**kwargs):
    rows = [
        {"epoch": 1, "loss": 1.2, "error": 0.5, "val_loss": 1.3, "val_error": 0.55},
        {"epoch": 2, "loss": 0.8, "error": 0.3, "val_loss": NAN, "val_error": NAN},
        {"epoch": 3, "loss": 0.6, "error": 0.2, "val_loss": 0.7, "val_error": 0.25},
        {"epoch": 4, "loss": 0.5, "error": 0.1},  # no validation keys at all
        {"epoch": 5, "loss": 0.4, "error": 0.05, "val_loss": 0.9, "val_error": 0.3},
    ]
    return _result(rows, **kwargs)


def _line(ax: Axes, label: str) -> Line2D:
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return line


def test_classification_has_loss_and_error_panels_and_skips_nan() -> None:
    fig = plot_learning_figure(_classification(best_epoch=3))
    assert isinstance(fig.canvas, FigureCanvasAgg)
    loss_ax, error_ax = fig.axes
    assert (loss_ax.get_title(), error_ax.get_title()) == ("loss", "error")
    assert list(_line(loss_ax, "train").get_xdata()) == [1, 2, 3, 4, 5]
    val = _line(loss_ax, "validation")
    assert list(val.get_xdata()) == [1, 3, 5]
    assert list(val.get_ydata()) == [1.3, 0.7, 0.9]
    assert val.get_marker() == "o"
    assert list(_line(error_ax, "validation").get_ydata()) == [0.55, 0.25, 0.3]


def test_best_epoch_is_marked_with_a_dashed_line_and_a_star() -> None:
    ax = plot_learning_curves(_classification(best_epoch=3))
    best = _line(ax, "best (epoch 3)")
    assert best.get_linestyle() == "--"
    assert list(best.get_xdata()) == [3, 3]
    (star,) = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    assert (list(star.get_xdata()), list(star.get_ydata())) == ([3], [0.7])  # on validation


def test_stop_is_marked_when_there_is_a_reason() -> None:
    reason = "early stopping: val_loss did not improve for 2 epochs"
    ax = plot_learning_curves(_classification(best_epoch=3, stop_reason=reason))
    stop = _line(ax, "stop (epoch 5)")
    assert stop.get_linestyle() == ":"
    assert list(stop.get_xdata()) == [5, 5]
    assert any(t.get_text() == "stop (epoch 5)" for t in ax.get_legend().get_texts())


def test_no_stop_mark_for_a_run_that_ran_to_the_end() -> None:
    ax = plot_learning_curves(_classification(best_epoch=3))
    assert not [ln for ln in ax.get_lines() if str(ln.get_label()).startswith("stop")]


def test_explicit_stop_epoch_is_marked() -> None:
    ax = plot_learning_curves(_classification(stop_epoch=4))
    assert list(_line(ax, "stop (epoch 4)").get_xdata()) == [4, 4]


def test_regression_draws_a_single_loss_panel_with_test_title() -> None:
    rows = [{"epoch": e, "loss": 1.0 / e, "val_loss": 1.2 / e} for e in (1, 2, 3)]
    fig = plot_learning_figure(_result(rows, best_epoch=2, test_metrics={"test_loss": 0.41}))
    assert [ax.get_title() for ax in fig.axes] == ["loss"]
    assert fig.get_suptitle() == "test loss 0.41"


def test_test_metrics_in_the_title() -> None:
    fig = plot_learning_figure(_classification(test_metrics={"accuracy": 0.9312, "loss": 0.3}))
    assert fig.get_suptitle() == "test accuracy 0.9312 · test loss 0.3"


def test_given_axes_are_used_and_empty_history_is_fine() -> None:
    ax = new_figure().add_subplot()
    assert plot_learning_curves(_result([]), ax) is ax
    assert [t.get_text() for t in ax.texts] == ["no epochs recorded"]
    assert len(plot_learning_figure(_result([])).axes) == 1


@pytest.mark.parametrize("best_epoch", [None, 2])
def test_save_figure_writes_a_png(tmp_path: Path, best_epoch) -> None:
    path = save_figure(
        plot_learning_figure(_classification(best_epoch=best_epoch)), tmp_path / "a/c.png"
    )
    assert path == tmp_path / "a/c.png"
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert [p.name for p in path.parent.iterdir()] == ["c.png"]  # no temp file left behind


def test_the_averaged_weights_curve_is_drawn_beside_the_raw_one() -> None:
    rows = [
        {"epoch": 1, "loss": 1.2, "val_loss": 1.3},
        {"epoch": 2, "loss": 0.8, "val_loss": 1.0, "val_swa_loss": 0.9},
        {"epoch": 3, "loss": 0.6, "val_loss": 0.95, "val_swa_loss": 0.85},
    ]
    ax = plot_learning_curves(_result(rows))
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["train", "validation", "validation, SWA weights"]
    assert list(ax.get_lines()[2].get_ydata()) == [0.9, 0.85]
    assert "validation, SWA weights" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_the_star_is_on_the_averaged_curve_when_it_is_judged() -> None:
    rows = [
        {"epoch": 1, "loss": 1.2, "val_loss": 1.3, "val_ema_loss": 1.25},
        {"epoch": 2, "loss": 0.8, "val_loss": 1.0, "val_ema_loss": 0.9},
    ]
    tests = {"test_loss": 0.5, "test_accuracy": 0.75, "test_ema_loss": 0.5, "test_ema_error": 0.2}
    fig = plot_learning_figure(
        _result(rows, best_epoch=2, monitor="val_ema_loss", test_metrics=tests)
    )
    star = next(line for line in fig.axes[0].get_lines() if line.get_marker() == "*")
    assert list(star.get_ydata()) == [0.9]
    assert fig._suptitle.get_text() == "test loss 0.5 · test accuracy 0.75 · test ema error 0.2"


def test_each_asked_for_metric_gets_a_panel_with_its_validation_curve() -> None:
    rows = [
        {"epoch": 1, "loss": 1.2, "error": 0.5, "accuracy": 0.5, "val_loss": 1.3,
         "val_error": 0.55, "val_accuracy": 0.45, "val_f1_macro": 0.4, "val_auroc": 0.7,
         "val_ema_loss": 1.2, "val_ema_f1_macro": 0.42},
        {"epoch": 2, "loss": 0.8, "error": 0.3, "accuracy": 0.7, "val_loss": 1.0,
         "val_error": 0.35, "val_accuracy": 0.65, "val_f1_macro": 0.6, "val_auroc": 0.8,
         "val_ema_loss": 0.9, "val_ema_f1_macro": 0.63},
    ]  # fmt: skip
    fig = plot_learning_figure(_result(rows, best_epoch=2, monitor="val_f1_macro"))
    assert [ax.get_title() for ax in fig.axes] == ["loss", "error", "f1_macro", "auroc"]
    assert fig.axes[3].get_subplotspec().rowspan.start == 1  # three panels a row
    f1 = fig.axes[2]
    assert list(_line(f1, "validation").get_ydata()) == [0.4, 0.6]
    assert list(_line(f1, "validation, EMA weights").get_ydata()) == [0.42, 0.63]
    assert list(_line(fig.axes[3], "validation").get_ydata()) == [0.7, 0.8]


def test_a_fit_with_metrics_draws_them_from_its_history() -> None:
    import torch

    from skier.train import fit

    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 4, generator=g)
    y = (x[:, 0] > 0).long()
    torch.manual_seed(0)
    result = fit(torch.nn.Linear(4, 2), (x[:40], y[:40]), (x[40:], y[40:]), epochs=2,
                 metrics=["f1_macro"], device="cpu", progress="off")  # fmt: skip
    fig = plot_learning_figure(result)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "error", "f1_macro"]
    drawn = list(_line(fig.axes[2], "validation").get_ydata())
    assert drawn == result.history.column("val_f1_macro")
