"""The non-finite guard: stop, keep the last good weights, never checkpoint a NaN epoch."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from skier.train import Checkpoint, evaluate, fit, load_checkpoint

Data = tuple[torch.Tensor, torch.Tensor]


def _finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values())


def test_huge_lr_stops_and_keeps_finite_weights(
    tmp_path: Path, make_mlp: Any, reg_data: Data
) -> None:
    model = make_mlp(seed=0, out=1)
    ckpt = Checkpoint(tmp_path, every=1, keep_best=False)
    result = fit(
        model,
        reg_data,
        optimizer="sgd",
        lr=1e6,
        batch_size="full",
        epochs=20,
        callbacks=[ckpt],
        device="cpu",
    )
    assert result.stop_reason is not None and "non-finite" in result.stop_reason
    stopped = result.epochs_done
    assert stopped < 20
    assert _finite(model)
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["epoch"] < stopped
    assert all(bool(torch.isfinite(t).all()) for t in saved["model"].values())
    # the weights kept are those of the checkpointed epoch, the last good one
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved["model"][key]), key
    good_rows = [r for r in result.history.rows if r["epoch"] <= saved["epoch"]]
    assert all(math.isfinite(r["loss"]) for r in good_rows)


def test_nan_in_the_data_stops_at_epoch_one(make_mlp: Any, reg_data: Data) -> None:
    x, y = reg_data
    x = x.clone()
    x[5, 3] = math.nan
    model = make_mlp(seed=0, out=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = fit(model, (x, y), optimizer="sgd", lr=0.01, batch_size=50, epochs=5, device="cpu")
    assert result.stop_reason is not None
    assert result.stop_reason.startswith("non-finite training loss at epoch 1")
    assert result.epochs_done == 1
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # epoch 0: the initial weights


def test_guard_off_lets_the_loss_go_non_finite(make_mlp: Any, reg_data: Data) -> None:
    result = fit(
        make_mlp(seed=0, out=1),
        reg_data,
        optimizer="sgd",
        lr=1e6,
        batch_size="full",
        epochs=6,
        stop_on_non_finite=False,
        device="cpu",
    )
    assert result.stop_reason is None
    assert result.epochs_done == 6
    assert not all(math.isfinite(v) for v in result.history.column("loss"))


@pytest.mark.xfail(
    strict=True,
    reason="known limit without validation data: the epoch's running loss is measured before "
    "each step, so the weights kept as 'the last good epoch' were never seen to give a finite "
    "loss (full batch: the non-finite loss of epoch t IS the loss of epoch t-1's weights)",
)
def test_kept_weights_give_a_finite_loss(make_mlp: Any, clf_data: Data) -> None:
    model = make_mlp(seed=0)
    result = fit(
        model, clf_data, optimizer="sgd", lr=1e30, batch_size="full", epochs=5, device="cpu"
    )
    assert result.stop_reason is not None and "non-finite" in result.stop_reason
    assert math.isfinite(evaluate(model, clf_data)["loss"])


def test_with_validation_the_kept_weights_give_a_finite_loss(make_mlp: Any, clf_data: Data) -> None:
    """Validation measures the weights at the end of the epoch, so the guard catches them."""
    x, y = clf_data
    train, val = (x[:180], y[:180]), (x[180:], y[180:])
    model = make_mlp(seed=0)
    result = fit(
        model, train, val, optimizer="sgd", lr=1e30, batch_size="full", epochs=5, device="cpu"
    )
    assert result.stop_reason is not None
    assert "non-finite validation loss at epoch 1; kept epoch 0" in result.stop_reason
    assert math.isfinite(evaluate(model, train)["loss"])
    assert math.isfinite(evaluate(model, val)["loss"])
