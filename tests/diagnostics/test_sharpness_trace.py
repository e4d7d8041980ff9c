"""The Hessian trace (Hutchinson deflated by a Krylov basis) against the dense Hessian's trace
of small models of several kinds and losses: unbiased, an honest standard error, and a smaller
one than plain Hutchinson's at equal Hessian-vector products."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skier.config import SharpnessConfig
from skier.data.types import Split
from skier.diagnostics.sharpness import sharpness
from skier.train.hessian import KrylovBasis, extend_krylov, lanczos
from skier.train.losses import build_loss

WEIGHTS = [2.0, 0.5, 1.0]


def _mlp(inputs: int, hidden: int, outputs: int, activation: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(inputs, hidden), activation(), nn.Linear(hidden, outputs)
    ).double()


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 3)
    ).double()


def _data(kind: str, n: int = 60, seed: int = 1) -> Split:
    g = torch.Generator().manual_seed(seed)
    if kind == "images":
        return Split((torch.randn(n, 1, 6, 6, generator=g, dtype=torch.float64),),
                     torch.randint(0, 3, (n,), generator=g))  # fmt: skip
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    if kind == "regression":
        return Split((x,), (x[:, :2] + 0.3 * torch.randn(n, 2, generator=g)).double())
    if kind == "multilabel":
        return Split((x,), (torch.rand(n, 3, generator=g) < 0.4).double())
    return Split((x,), torch.randint(0, 3, (n,), generator=g))


def _weighted_ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, weight=torch.tensor(WEIGHTS, dtype=out.dtype))


def _log_cosh(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.cosh(out - y)).mean()


# model, data kind, the loss skier is given (None: the default for the task), the oracle's loss
CASES: list[tuple[Callable[[], nn.Module], str, Any, Callable[..., torch.Tensor]]] = [
    (lambda: _mlp(4, 8, 3, nn.ReLU), "classes", None, F.cross_entropy),
    (lambda: _mlp(4, 8, 2, nn.Tanh), "regression", None, F.mse_loss),
    (_cnn, "images", None, F.cross_entropy),
    (lambda: _mlp(4, 6, 3, nn.Tanh), "multilabel", "binary_cross_entropy",
     F.binary_cross_entropy_with_logits),
    (lambda: _mlp(4, 8, 3, nn.Tanh), "classes",
     build_loss("cross_entropy", options={"class_weights": WEIGHTS}), _weighted_ce),
    (lambda: _mlp(4, 8, 2, nn.Tanh), "regression", _log_cosh, _log_cosh),
]  # fmt: skip
IDS = ["relu-mlp-ce", "tanh-mlp-mse", "cnn-ce", "tanh-mlp-bce", "weighted-ce", "callable"]


def _run(model: nn.Module, split: Split, loss: Any, **settings: Any) -> Any:
    settings.setdefault("trace_method", "hutchinson")  # the estimator, also on ReLU nets
    return sharpness(model, split, loss=loss, settings=SharpnessConfig(top_k=1, **settings))


@pytest.mark.parametrize(("make", "kind", "loss", "oracle"), CASES, ids=IDS)
def test_the_deflated_trace_is_unbiased_with_an_honest_error(
    make: Callable[[], nn.Module], kind: str, loss: Any, oracle: Callable, dense_trace: Callable
) -> None:
    model, split = make(), _data(kind)
    exact = dense_trace(model, split.inputs[0], split.targets, oracle)
    runs = [_run(model, split, loss, trace_samples=10, seed=seed) for seed in range(24)]
    estimates = [r.trace for r in runs]
    assert all(r.trace_basis == 20 for r in runs)
    spread = statistics.stdev(estimates)
    # Unbiased: the mean over seeds (each its own basis and probes) within 4 SE of the truth.
    assert abs(statistics.fmean(estimates) - exact) < 4 * spread / math.sqrt(len(runs)) + 1e-9
    # Honest: the reported standard errors are the spread of the estimates over seeds.
    reported = math.sqrt(statistics.fmean(r.trace_std_error**2 for r in runs))
    assert 0.6 < reported / spread < 1.6


@pytest.mark.parametrize(("make", "kind", "loss", "oracle"), CASES, ids=IDS)
def test_deflation_beats_plain_hutchinson_at_equal_products(
    make: Callable[[], nn.Module], kind: str, loss: Any, oracle: Callable, dense_trace: Callable
) -> None:
    model, split = make(), _data(kind)
    exact = dense_trace(model, split.inputs[0], split.targets, oracle)
    deflated = _run(model, split, loss, trace_samples=200, seed=3)
    # Plain Hutchinson also gets the 20 products the deflated estimator may add to the basis.
    plain = _run(model, split, loss, trace_samples=220, trace_basis=0, seed=3)
    assert plain.trace_basis == 0 and deflated.trace_basis == 20
    assert deflated.trace_std_error < plain.trace_std_error
    for result in (deflated, plain):
        assert abs(result.trace - exact) < 4 * result.trace_std_error


def test_a_basis_spanning_every_weight_gives_the_exact_trace(dense_trace: Callable) -> None:
    model, split = _mlp(4, 2, 3, nn.Tanh), _data("classes")  # 19 weights, a basis of 20
    exact = dense_trace(model, split.inputs[0], split.targets, F.cross_entropy)
    for method in ("lanczos", "power"):
        result = _run(model, split, None, method=method, trace_samples=3)
        assert result.trace_basis == 19
        assert result.trace == pytest.approx(exact, rel=1e-9)
        assert result.trace_std_error == pytest.approx(0.0, abs=1e-9 * abs(exact))


def test_the_trace_is_reproducible_and_reuses_the_lanczos_basis() -> None:
    model, split = _mlp(4, 8, 3, nn.ReLU), _data("classes")
    first = _run(model, split, None, trace_samples=5, seed=11)
    again = _run(model, split, None, trace_samples=5, seed=11)
    assert (first.trace, first.trace_std_error) == (again.trace, again.trace_std_error)
    # Lanczos for many eigenvalues builds a basis larger than asked: all of it is deflated.
    many = sharpness(
        model,
        split,
        settings=SharpnessConfig(
            top_k=8, tolerance=1e-8, trace_samples=5, trace_basis=4, trace_method="hutchinson"
        ),
    )
    assert many.trace_basis >= 8
    assert many.to_dict()["trace_basis"] == many.trace_basis


def test_trace_basis_is_validated() -> None:
    from skier.errors import ConfigError

    with pytest.raises((ConfigError, ValueError)):
        SharpnessConfig(trace_basis=-1)
    with pytest.raises((ConfigError, ValueError)):
        SharpnessConfig(trace_basis=501)


def test_the_krylov_basis_is_orthonormal_with_exact_rayleigh_quotients_past_a_closed_space() -> (
    None
):
    g = torch.Generator().manual_seed(0)
    # Two distinct eigenvalues: the Krylov space of any start closes after 2 vectors, and the
    # basis must go on from random restarts, still orthonormal.
    a = torch.diag(torch.tensor([4.0] * 3 + [-1.0] * 5, dtype=torch.float64))
    rotation, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))
    a = rotation @ a @ rotation.T

    def product(v: list[torch.Tensor]) -> list[torch.Tensor]:
        return [a @ v[0]]

    krylov = KrylovBasis()
    start = [torch.randn(8, generator=g, dtype=torch.float64)]
    lanczos(product, start, count=1, tolerance=1e-12, max_products=8, krylov=krylov)
    assert krylov.vectors is not None and krylov.vectors.shape[0] == 2 and krylov.next is None
    basis = extend_krylov(product, krylov, start, size=6, generator=g)
    q = basis.vectors
    assert q is not None and q.shape == (6, 8)
    torch.testing.assert_close(q @ q.T, torch.eye(6, dtype=torch.float64), atol=1e-12, rtol=0)
    assert sum(basis.diagonal) == pytest.approx(float(torch.trace(q @ a @ q.T)), abs=1e-12)
