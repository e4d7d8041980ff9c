"""A FitResult in a notebook: a table of how training ended, and its learning curves."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from skier.data import Split
from skier.train import FitResult, fit


@pytest.fixture(scope="module")
def result() -> FitResult:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 5, generator=g)
    y = (x[:, 0] > 0).long()
    train, val = Split((x[:64],), y[:64]), Split((x[64:],), y[64:])
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    return fit(model, train, val, epochs=3, batch_size=16, lr=1e-2, seed=0, progress="off")


def test_the_table_says_how_training_ended_then_shows_the_history(result: FitResult) -> None:
    page = result._repr_html_()
    assert page.startswith("<table>") and page.count("<table>") == 2
    assert "<td>task</td><td>classification</td>" in page
    assert "<td>epochs</td><td>3</td>" in page
    assert f"val_loss {result.best_value:.4g} at epoch {result.best_epoch}" in page
    assert "after 3 epochs" in page  # no stop reason: it ran its epochs
    assert page.endswith(result.history._repr_html_())


def test_every_string_in_the_table_is_escaped(result: FitResult) -> None:
    odd = dataclasses.replace(result, stop_reason="<script>alert(1)</script>",
                              test_metrics={"<b>test</b>": 0.5})  # fmt: skip
    page = odd._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>" not in page and "&lt;b&gt;test&lt;/b&gt;" in page


def test_plot_draws_the_learning_figure(result: FitResult) -> None:
    figure = result.plot()
    (loss, error) = figure.axes
    assert loss.get_ylabel() == "loss" and "error" in error.get_ylabel()
    assert {line.get_label() for line in loss.get_lines()} >= {"train", "validation"}
    assert "image/png" in figure._repr_mimebundle_()
