"""The trace of nets whose output is a ``Linear``'s (CNNs, batch norm): that layer's block of the
Hessian exactly (``Σ_n tr(H_n)(‖a_n‖² + 1)``) and the deflated estimate on the other weights,
against the dense Hessian."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from skier.config import SharpnessConfig
from skier.data.types import Split
from skier.diagnostics._ggn_trace import NotPiecewiseLinear, head_trace, output_linear
from skier.diagnostics.sharpness import sharpness
from skier.train.hessian import Hessian
from skier.train.losses import Loss, build_loss

from .test_sharpness_trace import WEIGHTS, _data, _weighted_ce


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 3)
    ).double()


def _batch_norm() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():  # running statistics away from the identity
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.double()


def _regression_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 2)
    ).double()


def _images_regression(n: int = 60) -> Split:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, 6, 6, generator=g, dtype=torch.float64)
    return Split((x,), torch.randn(n, 2, generator=g, dtype=torch.float64))


# model, data, the loss skier is given, the oracle's loss
CASES: list[tuple[Callable[[], nn.Module], Callable[[], Split], Any, Callable]] = [
    (_cnn, lambda: _data("images"), None, F.cross_entropy),
    (_batch_norm, lambda: _data("classes"), None, F.cross_entropy),
    (_cnn, lambda: _data("images"),
     build_loss("cross_entropy", options={"class_weights": WEIGHTS}), _weighted_ce),
    (_regression_cnn, _images_regression, None, F.mse_loss),
]  # fmt: skip
IDS = ["cnn-ce", "batch-norm-ce", "cnn-weighted-ce", "cnn-mse"]


def _dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: Callable) -> Any:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def of(theta: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(theta, [s.numel() for s in shapes])
        params = {n: t.view(s) for n, t, s in zip(names, pieces, shapes, strict=True)}
        return loss(functional_call(model, params, (x,)), y)

    return torch.autograd.functional.hessian(of, flat)


@pytest.mark.parametrize(("make", "data", "loss", "oracle"), CASES, ids=IDS)
@pytest.mark.parametrize("batch_size", [60, 16])
def test_the_output_layers_block_is_exact(
    make: Callable[[], nn.Module], data: Callable[[], Split], loss: Any, oracle: Callable,
    batch_size: int,
) -> None:  # fmt: skip
    model, split = make().eval(), data()
    hessian = _dense_hessian(model, split.inputs[0], split.targets, oracle)
    params = list(model.parameters())
    head = output_linear(model)
    assert head is model[-1]
    size = sum(p.numel() for p in head.parameters())
    classification = not split.targets.is_floating_point()
    built = loss if isinstance(loss, Loss) else None
    product = Hessian(model, split, params, classification=classification,
                      batch_size=batch_size, loss=built)  # fmt: skip
    block = float(hessian[-size:, -size:].diagonal().sum())
    assert head_trace(product, head) == pytest.approx(block, rel=1e-9)


@pytest.mark.parametrize(("make", "data", "loss", "oracle"), CASES, ids=IDS)
def test_the_estimate_off_the_head_is_unbiased_with_an_honest_error(
    make: Callable[[], nn.Module],
    data: Callable[[], Split],
    loss: Any,
    oracle: Callable,
    dense_trace: Callable,
) -> None:
    model, split = make(), data()
    exact = dense_trace(model, split.inputs[0], split.targets, oracle)
    task = "regression" if split.targets.is_floating_point() else None
    runs = [
        sharpness(model, split, loss=loss, task=task,
                  settings=SharpnessConfig(top_k=1, trace_samples=10, trace_basis=5, seed=seed))
        for seed in range(24)
    ]  # fmt: skip
    assert all(r.trace_method == "hutchinson_head" and r.trace_basis == 5 for r in runs)
    estimates = [r.trace for r in runs]
    spread = statistics.stdev(estimates)
    assert abs(statistics.fmean(estimates) - exact) < 4 * spread / math.sqrt(len(runs)) + 1e-9
    reported = math.sqrt(statistics.fmean(r.trace_std_error**2 for r in runs))
    assert 0.6 < reported / spread < 1.6


def test_a_net_not_ending_in_a_linear_keeps_the_deflated_estimate() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Flatten()).double()  # 48 outputs
    split = Split(_data("images").inputs, torch.randint(0, 48, (60,)))
    assert output_linear(model) is None
    result = sharpness(model, split, settings=SharpnessConfig(top_k=1, trace_samples=4))
    assert result.trace_method == "hutchinson"


def test_a_shared_head_weight_is_not_taken_for_an_output_layer() -> None:
    torch.manual_seed(0)
    first, last = nn.Linear(3, 3), nn.Linear(3, 3)
    last.weight = first.weight  # tied: the output is no longer affine in it
    model = nn.Sequential(first, nn.Tanh(), last).double()
    assert output_linear(model) is None


def test_a_head_on_a_3d_input_is_refused_at_run_time() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(2), nn.Linear(16, 3)).double().eval()
    split = _data("images")
    params = list(model.parameters())
    head = output_linear(model)
    assert head is model[-1]
    # Batches of 16: no gradient is built up front (its loss would fail on the 3-D output).
    product = Hessian(model, split, params, classification=True, batch_size=16)
    with pytest.raises(NotPiecewiseLinear, match="input is not N×features"):
        head_trace(product, head)


def test_a_basis_spanning_every_weight_off_the_head_gives_the_exact_trace(
    dense_trace: Callable,
) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 2), nn.BatchNorm1d(2), nn.ReLU(), nn.Linear(2, 3)).double()
    split = _data("classes")
    exact = dense_trace(model, split.inputs[0], split.targets, F.cross_entropy)
    result = sharpness(model, split, settings=SharpnessConfig(top_k=1, trace_samples=3))
    # 14 weights off the head: the basis (at most 20) spans them; the head's block is exact.
    assert result.trace_method == "hutchinson_head" and result.trace_basis == 14
    assert result.trace == pytest.approx(exact, rel=1e-9)
    assert result.trace_std_error == pytest.approx(0.0, abs=1e-9 * abs(exact))


def test_a_supported_krylov_basis_stays_in_its_support() -> None:
    from skier.train.hessian import KrylovBasis, extend_krylov

    g = torch.Generator().manual_seed(0)
    a = torch.randn(7, 7, generator=g, dtype=torch.float64)
    a = a + a.T
    support = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0], dtype=torch.float64)

    def product(v: list[torch.Tensor]) -> list[torch.Tensor]:
        return [support * (a @ (support * v[0]))]

    basis = extend_krylov(product, KrylovBasis(), [torch.zeros(7, dtype=torch.float64)], size=9,
                          generator=g, support=support)  # fmt: skip
    q = basis.vectors
    assert q is not None and q.shape == (5, 7)  # capped at the support's size
    assert float(q[:, support == 0].abs().max()) == 0.0
    restricted = a * support[:, None] * support[None, :]
    assert sum(basis.diagonal) == pytest.approx(float(torch.trace(restricted)), abs=1e-12)
