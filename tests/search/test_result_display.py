"""Cross-validation and search results read as tables and draw themselves (notebooks), with a
short line for terminals; the search plots take a result, its summary or a run directory."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from skier.history import History
from skier.plots.figure import SkierFigure
from skier.plots.search import (
    cv_folds,
    plot_cv_curves,
    plot_cv_figure,
    plot_optimization_history,
    plot_tune_figure,
    study_of,
)
from skier.record.rundir import RunDir, RunFiles
from skier.runner.cv import CVOutcome
from skier.runner.tune import TuneOutcome
from skier.search import FoldResult, summarize_folds

HOSTILE = "<script>alert(1)</script>"


def _fold(number: int, run_id: str, curve: list[float], best: int) -> FoldResult:
    history = [
        {"epoch": float(e), "val_loss": v, "val_accuracy": 1.0 - v}
        for e, v in enumerate(curve, start=1)
    ]
    metrics = {k: v for k, v in history[best - 1].items() if k != "epoch"}
    return FoldResult(number, 1, number, run_id, "", "completed", len(curve), best, "val_loss",
                      None, metrics, history)  # fmt: skip


def _cv(tmp_path: Path, name: str = HOSTILE) -> CVOutcome:
    folds = [_fold(1, "run-a", [0.9, 0.6, 0.7], 2), _fold(2, "run-b", [0.8, 0.5, 0.4], 3)]
    summary = summarize_folds(folds, "val_loss")
    summary.update({"run_id": "cv-1", "name": name, "kind": "cv", "status": "completed",
                    "stop_reason": None, "plan": "2-fold"})  # fmt: skip
    return CVOutcome("cv-1", tmp_path / "cv-1", "sqlite://", "completed", summary, folds)


def test_cv_result_reads_as_a_table_of_folds_with_mean_and_std(tmp_path: Path) -> None:
    out = _cv(tmp_path)
    html = out._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<table>") == 2
    # each fold's val_loss at its chosen epoch, then mean ± std of the two (0.6 and 0.4)
    assert "<td>run-a</td>" in html and "<td>0.6</td>" in html and "<td>0.4</td>" in html
    assert "<td>0.5 ± 0.1414</td>" in html
    text = repr(out)
    assert "\n" not in text and len(text) < 200
    assert "val_loss 0.5 ± 0.1414 over 2 folds" in text and "median epoch" in text


def test_cv_result_to_pandas_has_one_row_per_fold(tmp_path: Path) -> None:
    frame = _cv(tmp_path).to_pandas()
    assert frame["run_id"].tolist() == ["run-a", "run-b"]
    assert frame["val_loss"].tolist() == pytest.approx([0.6, 0.4])
    assert frame["chosen_epoch"].tolist() == [2, 3]


def test_cv_result_plots_each_fold_and_the_mean(tmp_path: Path) -> None:
    figure = _cv(tmp_path).plot()
    assert isinstance(figure, SkierFigure)
    assert [ax.get_title() for ax in figure.axes] == [
        "val_loss per fold and mean", "val_accuracy per fold and mean",
    ]  # fmt: skip
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert labels.count("mean") == 1 and "fold 1.1" in labels and "fold 1.2" in labels
    mean = next(line for line in figure.axes[0].get_lines() if line.get_label() == "mean")
    assert list(mean.get_ydata()) == pytest.approx([0.85, 0.55, 0.55])
    by_accuracy = plot_cv_figure(_cv(tmp_path).folds, metric="val_accuracy")
    assert [ax.get_ylabel() for ax in by_accuracy.axes] == ["val_accuracy", "val_loss"]
    # the fold results alone, with the mean computed from them
    assert len(plot_cv_curves(_cv(tmp_path).folds).get_lines()) == len(figure.axes[0].get_lines())


def _write_cv_run(tmp_path: Path) -> Path:
    out = _cv(tmp_path, name="digits-cv")
    run = RunDir.create(tmp_path, "cv-1")
    run.write_result(out.summary)
    for fold in out.folds:
        RunDir.create(run.path / RunFiles.FOLDS, fold.run_id).write_metrics(
            History(rows=fold.history)
        )
    return run.path


def test_the_cv_plots_take_a_cv_run_directory(tmp_path: Path) -> None:
    folder = _write_cv_run(tmp_path)
    folds, summary = cv_folds(folder)
    assert [f.best_epoch for f in folds] == [2, 3] and summary["metric"] == "val_loss"
    figure = plot_cv_figure(str(folder))
    assert len(figure.axes) == 2
    assert len(figure.axes[0].get_lines()) == len(_cv(tmp_path).plot().axes[0].get_lines())


def test_the_cv_plots_say_what_they_cannot_draw(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"folds must be a cross-validation result .* got int"):
        plot_cv_figure(42)  # type: ignore[arg-type]
    run = RunDir.create(tmp_path, "train-1")
    run.write_result({"kind": "train"})
    with pytest.raises(ValueError, match=r"a cv run directory; got .*, which holds a train"):
        plot_cv_figure(run.path)


SUMMARY = {
    "study": "skier-1", "name": "digits-tune", "kind": "tune", "run_id": "tune-1",
    "direction": "minimize", "metric": "val_loss", "status": "completed",
    "space": {"optim.lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
              "model.activation": {"type": "categorical", "choices": ["relu", HOSTILE]}},
    "trials": [
        {"number": 0, "state": "complete", "value": 0.5, "epochs": 2, "note": None,
         "params": {"optim.lr": 0.01, "model.activation": "relu"}},
        {"number": 1, "state": "pruned", "value": 0.9, "epochs": 1, "note": "pruned at epoch 1",
         "params": {"optim.lr": 0.001, "model.activation": HOSTILE}},
        {"number": 2, "state": "complete", "value": 0.3, "epochs": 2, "note": None,
         "params": {"optim.lr": 0.05, "model.activation": HOSTILE}},
    ],
    "counts": {"complete": 2, "pruned": 1},
    "best": {"number": 2, "value": 0.3, "params": {"optim.lr": 0.05, "model.activation": HOSTILE}},
    "importances": {"optim.lr": 0.8, "model.activation": 0.2},
}  # fmt: skip


def _tune(tmp_path: Path) -> TuneOutcome:
    return TuneOutcome("tune-1", tmp_path, "sqlite://", "completed", "skier-1", "journal",
                       copy.deepcopy(SUMMARY))  # fmt: skip


def test_tune_result_reads_as_its_best_trial_then_the_trials_best_first(tmp_path: Path) -> None:
    html = _tune(tmp_path)._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
    trials = html.split("<caption>")[1]
    rows = trials.split("<tr>")[2:]
    assert [r.split("</td>")[0] for r in rows] == ["<td>2", "<td>0", "<td>1"]  # best first
    assert "<td>complete (best)</td><td>0.3</td>" in rows[0]
    assert "pruned at epoch 1" in rows[2]
    text = repr(_tune(tmp_path))
    assert "\n" not in text and len(text) < 250
    assert "3 trials (2 complete, 1 pruned), best val_loss 0.3 at trial 2" in text


def test_tune_result_to_pandas_has_one_row_per_trial(tmp_path: Path) -> None:
    frame = _tune(tmp_path).to_pandas()
    assert frame["number"].tolist() == [0, 1, 2]
    assert frame["optim.lr"].tolist() == [0.01, 0.001, 0.05]
    assert frame["value"].tolist() == [0.5, 0.9, 0.3]


def test_tune_result_plots_history_importances_and_parallel_coordinates(tmp_path: Path) -> None:
    figure = _tune(tmp_path).plot()
    assert isinstance(figure, SkierFigure)
    assert [ax.get_title() for ax in figure.axes] == [
        "Optimization history", "Parameter importance",
        "Parallel coordinates (log axes where the space is log)",
    ]  # fmt: skip
    best = next(line for line in figure.axes[0].get_lines() if line.get_label() == "best so far")
    assert list(best.get_ydata()) == [0.5, 0.3]


def test_the_search_plots_take_a_result_its_summary_or_a_run_directory(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "tune-1")
    run.write_result(SUMMARY)
    for source in (_tune(tmp_path), SUMMARY, run.path, str(run.path)):
        assert study_of(source)["best"]["number"] == 2
        assert plot_optimization_history(source).get_title() == "Optimization history"
    assert len(plot_tune_figure(run.path).axes) == 3
    with pytest.raises(TypeError, match=r"summary must be a search result .* got list"):
        plot_optimization_history([1, 2])
    with pytest.raises(ValueError, match=r"must be a tune run directory; got .*no finished run"):
        plot_tune_figure(tmp_path)
