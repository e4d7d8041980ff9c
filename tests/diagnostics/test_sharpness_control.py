"""The Gauss-Newton control variate for the trace of nets of Linear layers and elementwise
activations (``auto``'s estimate where the exact trace does not apply): ``tr G`` exactly plus
Hutchinson on ``R = H − G`` off the output layer, against the dense Hessian's trace; ``vᵀRv``
against the dense ``H − G``; and the fall-backs to the deflated estimate."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev

from skier.data.types import Split
from skier.diagnostics._ggn_trace import affine_parameters, gauss_newton_problem
from skier.train.hessian import Hessian
from skier.train.losses import Loss, build_loss

from .test_sharpness_exact import _run
from .test_sharpness_trace import WEIGHTS, _data, _mlp, _weighted_ce


def _deep(activation: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 6), activation(), nn.Linear(6, 5), activation(), nn.Linear(5, 2)
    ).double()


# model, data kind, the loss skier is given (None: the task's default), the oracle's loss
CASES: list[tuple[Callable[[], nn.Module], str, Any, Callable[..., torch.Tensor]]] = [
    (lambda: _mlp(4, 8, 3, nn.Tanh), "classes", None, F.cross_entropy),
    (lambda: _mlp(4, 8, 2, nn.Tanh), "regression", None, F.mse_loss),
    (lambda: _deep(nn.GELU), "regression", None, F.mse_loss),
    (lambda: _mlp(4, 6, 3, nn.Sigmoid), "multilabel", "binary_cross_entropy",
     F.binary_cross_entropy_with_logits),
    (lambda: _mlp(4, 8, 3, nn.Tanh), "classes",
     build_loss("cross_entropy", options={"class_weights": WEIGHTS}), _weighted_ce),
]  # fmt: skip
IDS = ["tanh-ce", "tanh-mse", "gelu-deep-mse", "sigmoid-bce", "tanh-weighted-ce"]


@pytest.mark.parametrize(("make", "kind", "loss", "oracle"), CASES, ids=IDS)
def test_the_control_variate_is_unbiased_with_an_honest_error(
    make: Callable[[], nn.Module], kind: str, loss: Any, oracle: Callable, dense_trace: Callable
) -> None:
    model, split = make(), _data(kind)
    exact = dense_trace(model, split.inputs[0], split.targets, oracle)
    runs = [_run(model, split, loss, trace_samples=10, seed=seed) for seed in range(24)]
    assert all(r.trace_method == "gauss_newton_cv" and r.trace_basis == 0 for r in runs)
    assert all(r.trace_samples == 10 for r in runs)
    estimates = [r.trace for r in runs]
    spread = statistics.stdev(estimates)
    assert abs(statistics.fmean(estimates) - exact) < 4 * spread / math.sqrt(len(runs)) + 1e-9
    reported = math.sqrt(statistics.fmean(r.trace_std_error**2 for r in runs))
    assert 0.6 < reported / spread < 1.6
    # Many probes: within 4 of its own standard errors of the truth.
    many = _run(model, split, loss, trace_samples=400, seed=99)
    assert abs(many.trace - exact) < 4 * many.trace_std_error


def _dense(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: Callable
) -> tuple[torch.Tensor, torch.Tensor]:
    """The dense Hessian ``H`` and Gauss-Newton matrix ``G = Jᵀ H_out J`` in float64."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def outputs(theta: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(theta, [s.numel() for s in shapes])
        params = {n: t.view(s) for n, t, s in zip(names, pieces, shapes, strict=True)}
        return functional_call(model, params, (x,))

    out = outputs(flat).detach()
    jacobian = jacrev(outputs)(flat).reshape(out.numel(), -1)
    h_out = torch.autograd.functional.hessian(lambda o: loss(o, y), out).reshape(
        out.numel(), out.numel()
    )
    hessian = torch.autograd.functional.hessian(lambda t: loss(outputs(t), y), flat)
    return hessian, jacobian.T @ h_out @ jacobian


@pytest.mark.parametrize(("make", "kind", "loss", "oracle"), CASES, ids=IDS)
@pytest.mark.parametrize("batch_size", [60, 16])
def test_the_residual_form_is_the_dense_h_minus_g_and_zero_on_the_output_layer(
    make: Callable[[], nn.Module], kind: str, loss: Any, oracle: Callable, batch_size: int
) -> None:
    model, split = make().eval(), _data(kind)
    hessian, gauss_newton = _dense(model, split.inputs[0], split.targets, oracle)
    residual = hessian - gauss_newton
    params = list(model.parameters())
    # A built Loss as it is (build_loss would take it for a callable: batch means).
    built = loss if isinstance(loss, Loss) or loss is None else build_loss(loss)
    product = Hessian(model, split, params, classification=kind == "classes",
                      batch_size=batch_size, loss=built)  # fmt: skip
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        v = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
        flat = torch.cat([t.reshape(-1) for t in v])
        expected = float(flat @ residual @ flat)
        assert product.residual_form(v) == pytest.approx(expected, rel=1e-8, abs=1e-10)
    # The premise of leaving the output layer out of the probes: R is zero in its block.
    affine = affine_parameters(model, params)
    head = params[-2:]
    assert affine == {id(p) for p in head}
    size = sum(p.numel() for p in head)
    assert float(residual[-size:, -size:].abs().max()) < 1e-12 * float(residual.abs().max())
    assert float(residual[:-size, -size:].abs().max()) > 0  # the cross terms are not


def test_a_net_ending_in_a_nonlinearity_probes_every_weight(dense_trace: Callable) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2), nn.Tanh()).double()
    split = _data("regression")
    params = list(model.parameters())
    assert affine_parameters(model, params) == set()
    exact = dense_trace(model, split.inputs[0], split.targets, F.mse_loss)
    runs = [_run(model, split, None, trace_samples=10, seed=seed) for seed in range(24)]
    assert all(r.trace_method == "gauss_newton_cv" for r in runs)
    estimates = [r.trace for r in runs]
    spread = statistics.stdev(estimates)
    assert abs(statistics.fmean(estimates) - exact) < 4 * spread / math.sqrt(len(runs)) + 1e-9


def test_the_whole_split_and_batches_give_the_same_estimate() -> None:
    model, split = _mlp(4, 8, 3, nn.Tanh), _data("classes")
    whole = _run(model, split, None, trace_samples=12, seed=4, batch_size=60)
    batched = _run(model, split, None, trace_samples=12, seed=4, batch_size=16)
    assert batched.trace_method == whole.trace_method == "gauss_newton_cv"
    assert batched.trace == pytest.approx(whole.trace, rel=1e-9)
    assert batched.trace_std_error == pytest.approx(whole.trace_std_error, rel=1e-7)


def _conv_tanh() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)
    ).double()


def _batch_norm_tanh() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3)).double()


FALLBACKS: list[tuple[Callable[[], nn.Module], str, Any, Callable[..., torch.Tensor], str]] = [
    (_conv_tanh, "images", None, F.cross_entropy, "Conv2d"),
    (_batch_norm_tanh, "classes", None, F.cross_entropy, "BatchNorm1d"),
    (lambda: _mlp(4, 8, 3, nn.Tanh), "classes", _weighted_ce, _weighted_ce, "callable"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "kind", "loss", "oracle", "reason"), FALLBACKS,
                         ids=["cnn", "batch-norm", "callable-loss"])  # fmt: skip
def test_elsewhere_auto_takes_another_estimate(
    make: Callable[[], nn.Module],
    kind: str,
    loss: Any,
    oracle: Callable,
    reason: str,
    dense_trace: Callable,
) -> None:
    model, split = make(), _data(kind)
    params = [p for p in model.parameters() if p.requires_grad]
    built = build_loss(loss) if callable(loss) else None
    assert reason in gauss_newton_problem(model.eval(), params, built)
    truth = dense_trace(model, split.inputs[0], split.targets, oracle)
    result = _run(model, split, loss, trace_samples=40)
    # Ending in a Linear with a built-in loss: that block exactly, the rest deflated.
    expected = "hutchinson" if reason == "callable" else "hutchinson_head"
    assert result.trace_method == expected and result.trace_basis > 0
    assert abs(result.trace - truth) < 5 * result.trace_std_error + 1e-9 * abs(truth)


def test_a_linear_on_a_3d_input_falls_back_at_run_time(dense_trace: Callable) -> None:
    # The graph is allowed; only the pass sees that the first Linear's input is N×2×4.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Flatten(), nn.Linear(10, 3)).double()
    g = torch.Generator().manual_seed(2)
    split = Split((torch.randn(50, 2, 4, generator=g, dtype=torch.float64),),
                  _data("classes", n=50).targets)  # fmt: skip
    truth = dense_trace(model, split.inputs[0], split.targets, F.cross_entropy)
    result = _run(model, split, None, trace_samples=40)
    # The pass refuses at run time; the output layer's input is 2-D: its block exactly.
    assert result.trace_method == "hutchinson_head" and result.trace_basis > 0
    assert abs(result.trace - truth) < 5 * result.trace_std_error + 1e-9 * abs(truth)


def test_the_forced_hutchinson_keeps_the_deflated_estimate() -> None:
    model, split = _mlp(4, 8, 3, nn.Tanh), _data("classes")
    result = _run(model, split, None, trace_samples=5, trace_method="hutchinson")
    assert result.trace_method == "hutchinson" and result.trace_basis == 20
