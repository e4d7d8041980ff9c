"""A comparison of runs from Python: tables, a short line, a DataFrame and the overlaid curves."""

from __future__ import annotations

from pathlib import Path

import pytest

from skier.errors import StoreError
from skier.plots.compare import plot_compare_figure
from skier.plots.figure import SkierFigure
from skier.record import RunStore, default_store_url
from skier.report import RunComparison, compare_runs

HOSTILE = "<script>alert(1)</script>"


def _compare(tmp_path: Path, metric: str | None = None) -> RunComparison:
    with RunStore(default_store_url(tmp_path)) as store:
        a = store.create_run(HOSTILE, {"optim": {"lr": 0.1, "name": "sgd"}}, None)
        for epoch, value in ((1, 0.5), (2, 0.3), (3, 0.4)):
            store.log_epoch(a, epoch, {"loss": value, "val_loss": value + 0.1})
        store.finish_run(a, "completed", epochs_done=3, best_epoch=2, monitor="val_loss",
                         best_value=0.4, test_metrics={"test_loss": 0.45})  # fmt: skip
        b = store.create_run("b", {"optim": {"lr": HOSTILE, "name": "sgd"}}, None)
        store.log_epoch(b, 1, {"loss": 0.6, "val_loss": 0.7})
        return compare_runs([a, b], store=store, metric=metric)


def test_a_comparison_holds_each_runs_metrics_at_its_best_epoch(tmp_path: Path) -> None:
    found = _compare(tmp_path)
    assert found.metrics == ["val_loss", "loss"]
    assert found.values("val_loss") == pytest.approx([0.4, 0.7])  # a: its best epoch, 2
    assert found.values("loss") == pytest.approx([0.3, 0.6])
    assert found.differences == [("optim.lr", ["0.1", f'"{HOSTILE}"'])]


def test_a_comparison_reads_as_tables_and_one_short_line(tmp_path: Path) -> None:
    found = _compare(tmp_path)
    html = found._repr_html_()
    assert "<script>" not in html and html.count("&lt;script&gt;") == 3  # a name, a label, lr
    assert html.count("<table>") == 2 and "<caption>Config differences</caption>" in html
    assert "<td>0.4</td><td>0.3</td><td>0.45</td>" in html  # val_loss, loss, test_loss
    text = repr(found)
    assert "\n" not in text and "1 setting differ: optim.lr" in text


def test_a_comparison_to_pandas_and_plot(tmp_path: Path) -> None:
    found = _compare(tmp_path)
    frame = found.to_pandas()
    assert frame["val_loss"].tolist() == pytest.approx([0.4, 0.7])
    assert frame["optim.lr"].tolist() == ["0.1", f'"{HOSTILE}"']
    figure = found.plot()
    assert isinstance(figure, SkierFigure) and len(figure.axes) == 2
    assert [line.get_label() for line in figure.axes[0].get_lines()] == [HOSTILE, "b"]
    assert len(plot_compare_figure(found).axes) == 2
    with pytest.raises(TypeError, match=r"histories must map run labels .* got int"):
        plot_compare_figure(3)


def test_a_comparison_names_the_metrics_it_knows(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"metric must be one the runs recorded .* got 'val_los'"):
        _compare(tmp_path, metric="val_los")
    with pytest.raises(TypeError, match="runs must be a list"):
        compare_runs("one-run")
