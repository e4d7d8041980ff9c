"""Every built-in loss against torch.nn.functional, through fit and evaluate; target checks."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from skier.errors import ConfigError, DataError
from skier.train.loop import evaluate, fit

torch.manual_seed(0)
X = torch.randn(64, 5)
CLASSES = torch.randint(0, 3, (64,))
BINARY = torch.randint(0, 2, (64,))
LABELS = (torch.rand(64, 4) > 0.5).float()
REAL = torch.randn(64, 2) * 2
W = [1.0, 3.0, 0.5]

# (loss, options, targets, outputs, torch's own loss of (out, y))
CASES: list[tuple[str, dict[str, Any], torch.Tensor, int, Any]] = [
    ("cross_entropy", {}, CLASSES, 3, lambda o, y: F.cross_entropy(o, y)),
    ("cross_entropy", {"label_smoothing": 0.2, "class_weights": W}, CLASSES, 3,
     lambda o, y: F.cross_entropy(o, y, weight=torch.tensor(W), label_smoothing=0.2)),
    ("nll", {"class_weights": W}, CLASSES, 3,
     lambda o, y: F.nll_loss(o, y, weight=torch.tensor(W))),
    ("binary_cross_entropy", {"pos_weight": 2.0}, BINARY, 1,
     lambda o, y: F.binary_cross_entropy_with_logits(o[:, 0], y.float(),
                                                     pos_weight=torch.tensor(2.0))),
    ("binary_cross_entropy", {"pos_weight": [1.0, 2.0, 3.0, 0.5]}, LABELS, 4,
     lambda o, y: F.binary_cross_entropy_with_logits(o, y, pos_weight=torch.tensor(
         [1.0, 2.0, 3.0, 0.5]))),
    ("mse", {}, REAL, 2, lambda o, y: F.mse_loss(o, y)),
    ("l1", {}, REAL, 2, lambda o, y: F.l1_loss(o, y)),
    ("huber", {"huber_delta": 0.5}, REAL, 2, lambda o, y: F.huber_loss(o, y, delta=0.5)),
    ("smooth_l1", {"smooth_l1_beta": 0.3}, REAL, 2,
     lambda o, y: F.smooth_l1_loss(o, y, beta=0.3)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "options", "y", "outputs", "oracle"), CASES)
def test_each_loss_is_torchs_in_evaluate_and_fit(
    name: str, options: dict[str, Any], y: torch.Tensor, outputs: int, oracle: Any
) -> None:
    torch.manual_seed(1)
    model = torch.nn.Linear(5, outputs)
    with torch.no_grad():
        expected = float(oracle(model(X), y))
    got = evaluate(model, (X, y), loss=name, **options)
    assert got["loss"] == pytest.approx(expected, rel=1e-5)
    # Full batch: the epoch's training loss is the loss at the weights it started from.
    result = fit(model, (X, y), (X, y), loss=name, batch_size="full", epochs=1, lr=0.01,
                 optimizer="sgd", progress="off", **options)  # fmt: skip
    assert result.history.rows[0]["loss"] == pytest.approx(expected, rel=1e-5)
    with torch.no_grad():
        after = float(oracle(model(X), y))
    assert result.history.rows[0]["val_loss"] == pytest.approx(after, rel=1e-5)


def test_a_callable_loss_trains_and_one_without_reduction_is_refused_for_informative() -> None:
    def my_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, y)

    model = torch.nn.Linear(5, 2)
    result = fit(model, (X, REAL), (X, REAL), loss=my_loss, epochs=1, progress="off")
    with torch.no_grad():
        assert result.history.rows[0]["val_loss"] == pytest.approx(
            float(F.mse_loss(model(X), REAL)), rel=1e-5
        )
    with pytest.raises(ConfigError, match=r"per-example values.*informative"):
        fit(model, (X, REAL), loss=my_loss, sampling="informative", epochs=1, progress="off")

    def with_reduction(out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> Any:
        return F.l1_loss(out, y, reduction=reduction).reshape(len(y), -1).mean(1) if (
            reduction == "none") else F.l1_loss(out, y)  # fmt: skip

    fit(model, (X, REAL), loss=with_reduction, sampling="informative", epochs=1, progress="off")


def test_a_loss_by_import_path() -> None:
    model = torch.nn.Linear(5, 2)
    result = fit(model, (X, REAL), loss="torch.nn.functional:l1_loss", epochs=1, progress="off")
    assert result.task == "regression"
    with pytest.raises(ConfigError, match=r"train.loss must be .*importable"):
        fit(model, (X, REAL), loss="no_such_module:f", epochs=1, progress="off")


@pytest.mark.parametrize(
    ("name", "y", "outputs", "match"),
    [
        ("cross_entropy", REAL[:, 0], 3, r"'cross_entropy' needs integer class.*\(64, 1\) float32"),
        ("cross_entropy", CLASSES - 1, 3, r"class labels in \[0, 2\).*-1\.\.1"),
        ("binary_cross_entropy", LABELS * 2, 4, r"0/1 labels.*\(64, 4\) float32"),
        ("mse", CLASSES, 1, r"'mse' needs float targets.*int64"),
    ],
)  # fmt: skip
def test_targets_that_do_not_fit_the_loss_are_one_error_before_training(
    name: str, y: torch.Tensor, outputs: int, match: str
) -> None:
    model = torch.nn.Linear(5, outputs)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises((DataError, ConfigError), match=match):
        fit(model, (X, y), loss=name, epochs=1, progress="off")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_unknown_loss_and_unread_options_are_named() -> None:
    model = torch.nn.Linear(5, 3)
    with pytest.raises(ConfigError, match="Did you mean 'huber'"):
        fit(model, (X, REAL), loss="hubber", epochs=1, progress="off")
    with pytest.raises(ConfigError, match=r"train.label_smoothing .*'mse'"):
        fit(model, (X, REAL), loss="mse", label_smoothing=0.1, epochs=1, progress="off")
    with pytest.raises(ConfigError, match=r"train\.loss must be a loss for regression"):
        fit(model, (X, REAL), task="regression", loss="cross_entropy", epochs=1, progress="off")
