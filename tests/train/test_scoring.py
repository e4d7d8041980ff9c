"""train.metrics against scikit-learn's sklearn.metrics on the same predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from skier.errors import ConfigError
from skier.train.loop import evaluate, fit
from skier.train.scoring import Scoring


class Fixed(torch.nn.Module):
    """A model whose outputs are given: row i of ``x`` is its index into ``outputs``."""

    def __init__(self, outputs: torch.Tensor) -> None:
        super().__init__()
        self.outputs = outputs
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outputs[x[:, 0].long()]


def _score(outputs: torch.Tensor, y: torch.Tensor, names: list[str], **kw: Any) -> dict[str, float]:
    x = torch.arange(len(y), dtype=torch.float32)[:, None]
    got = evaluate(Fixed(outputs), (x, y), metrics=names, batch_size=37, **kw)
    return {name: got[name] for name in names}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("classes", [2, 4])
def test_classification_metrics_equal_sklearn(seed: int, classes: int) -> None:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (300,), generator=g)
    logits = torch.randn(300, classes, generator=g) + 1.5 * torch.nn.functional.one_hot(y, classes)
    pred, proba = logits.argmax(1).numpy(), logits.softmax(1).numpy()
    avg = "binary" if classes == 2 else "macro"
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, average=avg, zero_division=0),
        "recall": skm.recall_score(y, pred, average=avg, zero_division=0),
        "f1": skm.f1_score(y, pred, average=avg, zero_division=0),
        "f1_macro": skm.f1_score(y, pred, average="macro", zero_division=0),
        "f1_micro": skm.f1_score(y, pred, average="micro", zero_division=0),
        "f1_weighted": skm.f1_score(y, pred, average="weighted", zero_division=0),
        "precision_macro": skm.precision_score(y, pred, average="macro", zero_division=0),
        "recall_weighted": skm.recall_score(y, pred, average="weighted", zero_division=0),
        "auroc": skm.roc_auc_score(y, proba[:, 1]) if classes == 2
        else skm.roc_auc_score(y, proba, multi_class="ovr"),
    }  # fmt: skip
    if classes > 2:
        expected["top_2_accuracy"] = skm.top_k_accuracy_score(y, proba, k=2)
    got = _score(logits, y, list(expected))
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_a_class_never_seen_nor_predicted_is_left_out_as_sklearn_does() -> None:
    y = torch.tensor([0, 0, 1, 1, 1, 0])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 1, 0, 0]), 3).float()
    pred = logits.argmax(1).numpy()
    names = ["f1_macro", "precision_macro", "recall_macro", "balanced_accuracy"]
    got = _score(logits, y, names)
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multiclass_auroc_with_tied_scores_equals_sklearn(seed: int) -> None:
    # Logits on a coarse grid: equal rows give equal softmax scores, so every class's column
    # has long runs of ties, which must share their mean rank.
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (500,), generator=g)
    logits = torch.randint(-2, 3, (500, 4), generator=g).float()
    proba = logits.softmax(1).numpy()
    got = _score(logits, y, ["auroc"])["auroc"]
    assert got == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"), rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_logit_auroc_with_ties_equals_sklearn(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (200,), generator=g)
    logit = torch.randint(-3, 4, (200, 1), generator=g).float()  # many ties
    got = _score(logit, y, ["auroc", "f1", "accuracy"], loss="binary_cross_entropy")
    pred = (logit[:, 0] > 0).long().numpy()
    assert got["auroc"] == pytest.approx(skm.roc_auc_score(y, logit[:, 0].sigmoid()), rel=1e-12)
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred), rel=1e-12)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_multilabel_auroc_with_some_labels_tied_equals_sklearn(seed: int) -> None:
    # Label 0's logits repeat (a tie pass), labels 1 and 2 have distinct scores (left bounds
    # only): each label's AUROC must be scikit-learn's either way.
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (400, 3), generator=g).float()
    logits = torch.randn(400, 3, generator=g) + y
    logits[:, 0] = torch.randint(-2, 3, (400,), generator=g).float()
    got = _score(logits, y, ["auroc"], loss="binary_cross_entropy")["auroc"]
    proba = logits.sigmoid().numpy()
    assert got == pytest.approx(skm.roc_auc_score(y.numpy(), proba, average="macro"), rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_metrics_equal_sklearn(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(250, 4, generator=g) > 0.5).float()
    logits = torch.randn(250, 4, generator=g) + (2 * y - 1)
    pred, score = (logits > 0).int().numpy(), logits.sigmoid().numpy()
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "hamming_loss": skm.hamming_loss(y, pred),
        "f1_macro": skm.f1_score(y, pred, average="macro", zero_division=0),
        "f1_micro": skm.f1_score(y, pred, average="micro", zero_division=0),
        "precision_weighted": skm.precision_score(y, pred, average="weighted", zero_division=0),
        "recall": skm.recall_score(y, pred, average="macro", zero_division=0),
        "auroc": skm.roc_auc_score(y, score),
    }
    got = _score(logits, y, list(expected), loss="binary_cross_entropy")
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("targets", [1, 3])
def test_regression_metrics_equal_sklearn(seed: int, targets: int) -> None:
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(300, targets, generator=g) * 3 + 1000.0  # an offset: R² must stay exact
    out = y + torch.randn(300, targets, generator=g)
    yn, on = y.double().numpy(), out.double().numpy()
    expected = {
        "mae": skm.mean_absolute_error(yn, on),
        "mse": skm.mean_squared_error(yn, on),
        "rmse": skm.root_mean_squared_error(yn, on),
        "r2": skm.r2_score(yn, on),
    }
    assert _score(out, y, list(expected)) == pytest.approx(expected, rel=1e-9)


def test_callables_and_stateful_objects_are_metrics_and_monitorable() -> None:
    class CountPositives:
        def __init__(self) -> None:
            self.n = 0

        def update(self, out: torch.Tensor, y: torch.Tensor) -> None:
            self.n += int((y == 1).sum())

        def compute(self) -> int:
            return self.n

    def median_logit(out: torch.Tensor, y: torch.Tensor) -> float:
        return float(out.median())

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(80, 3, generator=g), torch.randint(0, 2, (80,), generator=g)
    from skier.train.callbacks import EarlyStopping

    result = fit(torch.nn.Linear(3, 2), (x, y), (x, y), epochs=2, progress="off",
                 metrics=[median_logit, CountPositives(), "f1"],
                 callbacks=[EarlyStopping(monitor="val_f1", patience=5)])  # fmt: skip
    row = result.history.rows[-1]
    assert row["val_count_positives"] == int((y == 1).sum())
    assert "val_median_logit" in row and result.monitor == "val_f1"
    with pytest.raises(ConfigError, match=r"Valid keys: .*val_f1"):
        fit(torch.nn.Linear(3, 2), (x, y), (x, y), epochs=1, progress="off", metrics=["f1"],
            callbacks=[EarlyStopping(monitor="val_f2")])  # fmt: skip


def test_metrics_are_checked_against_the_task() -> None:
    with pytest.raises(ConfigError, match=r"metrics\[0\] must be a metric for a real task"):
        Scoring(["f1"], kind="real")
    with pytest.raises(ConfigError, match="Did you mean 'auroc'"):
        Scoring(["aroc"], kind="classes")
    with pytest.raises(ConfigError, match="names used once"):
        Scoring(["mae", "mae"], kind="real")


def test_train_metrics_come_from_the_exact_train_pass_and_test_metrics_at_the_end() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 3, generator=g), torch.randn(60, 1, generator=g)
    result = fit(torch.nn.Linear(3, 1), (x, y), (x, y), test=(x, y), epochs=1, progress="off",
                 metrics=["r2"], exact_train_error=True)  # fmt: skip
    row = result.history.rows[-1]
    assert row["r2"] == pytest.approx(row["val_r2"]) and "test_r2" in result.test_metrics
    assert np.isfinite(row["r2"])


def _merged(scoring: Scoring, out: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """The metrics of shares of the examples merged as distributed ranks' are: uneven shares,
    one empty, each accumulated in batches."""
    parts = []
    for lo, hi in ((0, 131), (131, 131), (131, 300)):
        acc = scoring.start(torch.device("cpu"))
        for start in range(lo, hi, 37):
            stop = min(start + 37, hi)
            acc.update(out[start:stop], y[start:stop])
        parts.append(acc.host_state())
    return scoring.start(torch.device("cpu")).compute_merged(parts)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shares_merged_equal_sklearn_on_every_example(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (300,), generator=g)
    logits = torch.randn(300, 4, generator=g) + 1.5 * torch.nn.functional.one_hot(y, 4)
    pred, proba = logits.argmax(1).numpy(), logits.softmax(1).numpy()
    expected = {
        "f1_macro": skm.f1_score(y, pred, average="macro", zero_division=0),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "auroc": skm.roc_auc_score(y, proba, multi_class="ovr"),
        "top_2_accuracy": skm.top_k_accuracy_score(y, proba, k=2),
        "mean_logit": float(logits.mean()),
    }

    def mean_logit(out: torch.Tensor, _: torch.Tensor) -> torch.Tensor:  # scores every output
        return out.mean()

    names = [n for n in expected if n != "mean_logit"]
    got = _merged(Scoring([*names, mean_logit], kind="classes"), logits, y)
    assert got == pytest.approx(expected, rel=1e-6)

    yr = torch.randn(300, 2, generator=g) * 3 + 1000.0  # an offset: the merged R² stays exact
    out = yr + torch.randn(300, 2, generator=g)
    yn, on = yr.double().numpy(), out.double().numpy()
    regression = {"r2": skm.r2_score(yn, on), "mae": skm.mean_absolute_error(yn, on)}
    got = _merged(Scoring(list(regression), kind="real"), out, yr)
    assert got == pytest.approx(regression, rel=1e-9)
