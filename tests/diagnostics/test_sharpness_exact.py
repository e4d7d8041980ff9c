"""The exact (Gauss-Newton) trace of nets piecewise-linear in each weight, against the dense
Hessian's trace, for skier's MLP and plain ReLU/LeakyReLU nets under every built-in loss; and
everything it does not provably apply to takes the deflated Hutchinson (auto) or is refused
(exact)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skier.config import SharpnessConfig
from skier.data.types import Split
from skier.diagnostics.sharpness import check_sharpness, sharpness
from skier.errors import ConfigError
from skier.models.mlp import MLP
from skier.train.losses import build_loss

from .test_sharpness_trace import WEIGHTS, _data, _weighted_ce


def _seq(activation: type[nn.Module], outputs: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 8), activation(), nn.Linear(8, 6), activation(), nn.Linear(6, outputs)
    ).double()


def _mlp(outputs: int = 3, **options: Any) -> nn.Module:
    torch.manual_seed(0)
    return MLP(4, outputs, hidden_sizes=(6, 6, 5), **options).double()


def _smoothed_ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, label_smoothing=0.1)


def _huber(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.huber_loss(out, y, delta=0.5)


# model, data kind, the loss skier is given (None: the task's default), the oracle's loss
CASES: list[tuple[Callable[[], nn.Module], str, Any, Callable[..., torch.Tensor]]] = [
    (lambda: _mlp(), "classes", None, F.cross_entropy),
    (lambda: _mlp(residual=True, dropout=0.3), "classes", None, F.cross_entropy),
    (lambda: _mlp(residual=True), "classes",
     build_loss("cross_entropy", options={"class_weights": WEIGHTS}), _weighted_ce),
    (lambda: _seq(nn.ReLU), "classes", None, F.cross_entropy),
    (lambda: _seq(nn.LeakyReLU), "classes",
     build_loss("cross_entropy", options={"label_smoothing": 0.1}), _smoothed_ce),
    (lambda: _seq(nn.ReLU, 2), "regression", None, F.mse_loss),
    (lambda: _mlp(3, dropout=0.2), "multilabel", "binary_cross_entropy",
     F.binary_cross_entropy_with_logits),
    (lambda: _seq(nn.LeakyReLU, 2), "regression",
     build_loss("huber", options={"huber_delta": 0.5}), _huber),
]  # fmt: skip
IDS = ["mlp-ce", "residual-dropout-ce", "residual-weighted-ce", "relu-ce", "leaky-smoothed-ce",
       "relu-mse", "mlp-bce", "leaky-huber"]  # fmt: skip


def _run(model: nn.Module, split: Split, loss: Any, **settings: Any) -> Any:
    return sharpness(model, split, loss=loss, settings=SharpnessConfig(top_k=1, **settings))


@pytest.mark.parametrize(("make", "kind", "loss", "oracle"), CASES, ids=IDS)
def test_the_exact_trace_is_the_dense_hessians(
    make: Callable[[], nn.Module], kind: str, loss: Any, oracle: Callable, dense_trace: Callable
) -> None:
    model, split = make(), _data(kind)
    truth = dense_trace(model, split.inputs[0], split.targets, oracle)
    whole = _run(model, split, loss)  # auto: exact, since it applies
    batched = _run(model, split, loss, trace_method="exact", batch_size=16)
    for result in (whole, batched):
        assert result.trace_method == "exact"
        assert result.trace_std_error == 0.0
        assert (result.trace_samples, result.trace_basis) == (0, 0)
        assert result.trace == pytest.approx(truth, rel=1e-6)
    assert whole.to_dict()["trace_method"] == "exact"
    estimated = _run(model, split, loss, trace_method="hutchinson", trace_samples=5)
    assert estimated.trace_method == "hutchinson" and estimated.trace_samples == 5


class _Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.inner(torch.relu(self.inner(x)))))


class _Images(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 2, padding=1)
        self.head = nn.Linear(2 * 3 * 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x.view(-1, 1, 2, 2))).flatten(1))


def _log_cosh(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.cosh(out - y)).mean()


def _twice() -> nn.Module:
    torch.manual_seed(0)
    return _Twice().double()


def _images() -> nn.Module:
    torch.manual_seed(0)
    return _Images().double()


REFUSED: list[tuple[Callable[[], nn.Module], str, Any, Callable[..., torch.Tensor], str]] = [
    (lambda: _seq(nn.Tanh), "classes", None, F.cross_entropy, "Tanh"),
    (lambda: _mlp(batch_norm=True), "classes", None, F.cross_entropy, "BatchNorm1d"),
    (_images, "classes", None, F.cross_entropy, "Conv2d"),
    (_twice, "classes", None, F.cross_entropy, "more than once"),
    (lambda: _seq(nn.ReLU, 2), "regression", _log_cosh, _log_cosh, "callable"),
]  # fmt: skip
REFUSED_IDS = ["tanh", "batch-norm", "cnn", "linear-twice", "callable-loss"]


@pytest.mark.parametrize(("make", "kind", "loss", "oracle", "reason"), REFUSED, ids=REFUSED_IDS)
def test_where_it_does_not_apply_auto_estimates_and_exact_is_refused(
    make: Callable[[], nn.Module],
    kind: str,
    loss: Any,
    oracle: Callable,
    reason: str,
    dense_trace: Callable,
) -> None:
    model, split = make(), _data(kind)
    truth = dense_trace(model, split.inputs[0], split.targets, oracle)
    result = _run(model, split, loss, trace_samples=40)
    # A tanh net of Linear layers gets the Gauss-Newton control variate (no Krylov basis); a
    # net ending in a Linear, its block exactly and the deflated estimate on the rest.
    expected = {"Tanh": "gauss_newton_cv", "callable": "hutchinson"}.get(reason, "hutchinson_head")
    assert result.trace_method == expected
    assert (result.trace_basis > 0) == (expected != "gauss_newton_cv")
    assert abs(result.trace - truth) < 5 * result.trace_std_error + 1e-9 * abs(truth)
    with pytest.raises(ConfigError, match=rf"sharpness\.trace_method.*{reason}"):
        _run(model, split, loss, trace_method="exact")


@pytest.mark.parametrize(("make", "kind", "loss", "oracle", "reason"), REFUSED, ids=REFUSED_IDS)
def test_the_refusal_is_found_before_anything_runs(
    make: Callable[[], nn.Module], kind: str, loss: Any, oracle: Callable, reason: str
) -> None:
    # check_sharpness (what the runner calls before it makes a run's record) raises the same
    # error as the run would, and leaves every module's mode as it was.
    model, split = make(), _data(kind)
    model.train()
    next(iter(model.children())).eval()  # mixed modes: each kept
    modes = [m.training for m in model.modules()]
    settings = SharpnessConfig(top_k=1, trace_method="exact")
    with pytest.raises(ConfigError, match=rf"sharpness\.trace_method.*{reason}"):
        check_sharpness(model, split, settings=settings, loss=loss)
    assert [m.training for m in model.modules()] == modes


def test_the_preflight_passes_what_the_run_takes() -> None:
    # A dropout MLP in training mode: the trace is of eval mode, where dropout is the identity,
    # so exact applies; under auto nothing is refused; top_k past the parameter count is.
    model, split = _mlp(dropout=0.3), _data("classes")
    model.train()
    check_sharpness(model, split, settings=SharpnessConfig(top_k=1, trace_method="exact"))
    assert all(m.training for m in model.modules())
    check_sharpness(_seq(nn.Tanh), split, settings=SharpnessConfig(top_k=1))
    with pytest.raises(ConfigError, match=r"sharpness\.top_k"):
        check_sharpness(model, split, settings={"top_k": 10**6})
    assert _run(model, split, None, trace_method="exact").trace_method == "exact"


def test_a_linear_on_a_3d_input_falls_back_at_run_time(dense_trace: Callable) -> None:
    # The graph is allowed; only the pass sees that the first Linear's input is N×2×4.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Flatten(), nn.Linear(10, 3)).double()
    flat = _data("classes", n=50)
    g = torch.Generator().manual_seed(2)
    split = Split((torch.randn(50, 2, 4, generator=g, dtype=torch.float64),), flat.targets)
    truth = dense_trace(model, split.inputs[0], split.targets, F.cross_entropy)
    result = _run(model, split, None, trace_samples=40)
    assert result.trace_method == "hutchinson_head"  # the output layer's block exactly
    assert abs(result.trace - truth) < 5 * result.trace_std_error + 1e-9 * abs(truth)
    with pytest.raises(ConfigError, match="input has 3 dimensions"):
        _run(model, split, None, trace_method="exact")


def test_auto_estimates_past_128_outputs_and_exact_still_computes(dense_trace: Callable) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 129)).double()
    g = torch.Generator().manual_seed(3)
    split = Split((torch.randn(12, 4, generator=g, dtype=torch.float64),),
                  torch.randn(12, 129, generator=g, dtype=torch.float64))  # fmt: skip
    assert _run(model, split, None, trace_samples=3).trace_method == "hutchinson_head"
    exact = _run(model, split, None, trace_method="exact")
    truth = dense_trace(model, split.inputs[0], split.targets, F.mse_loss)
    assert exact.trace_method == "exact" and exact.trace == pytest.approx(truth, rel=1e-6)


def test_no_trace_no_method() -> None:
    result = _run(_seq(nn.ReLU), _data("classes"), None, trace=False)
    assert result.trace is None and result.trace_method is None
