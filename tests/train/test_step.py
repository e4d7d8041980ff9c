"""The one optimizer step (train/step.py) and the drift bugs it ended: clip mode with a closure
optimizer, clipping in curve training, AMP with a closure optimizer refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from skier.config import ConnectConfig
from skier.data.types import DataBundle, Split
from skier.diagnostics.connectivity import Curve, connect
from skier.diagnostics.lr_range import lr_range_test
from skier.errors import ConfigError
from skier.train import fit
from skier.train.step import OptimizerStep


def _data(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = 3.0 * torch.randn(n, 5, generator=g) + 4.0 * nn.functional.one_hot(y, 5).float()
    return x, y


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))


def _grads_seen_by_closure(mode: str, clip: float) -> list[torch.Tensor]:
    """The gradients L-BFGS reads after each closure call, with the step's clipping."""
    net, (x, y) = _net(), _data()
    opt = torch.optim.LBFGS(net.parameters(), lr=0.5, max_iter=3)
    step = OptimizerStep(opt, net.parameters(), grad_clip=clip, grad_clip_mode=mode)  # type: ignore[arg-type]
    seen: list[torch.Tensor] = []

    def forward() -> tuple[torch.Tensor, None]:
        loss = 100.0 * nn.functional.cross_entropy(net(x), y)  # large gradients
        return loss, None

    original = opt.step

    def spy(closure):  # type: ignore[no-untyped-def]
        def wrapped():  # type: ignore[no-untyped-def]
            value = closure()
            seen.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
            return value

        return original(wrapped)

    opt.step = spy  # type: ignore[method-assign]
    step(forward)
    return seen


def test_a_closure_optimizer_clips_by_value_when_asked() -> None:
    # Before: the closure path always clipped by norm, whatever train.grad_clip_mode said.
    seen = _grads_seen_by_closure("value", 0.05)
    assert len(seen) >= 2  # L-BFGS called the closure more than once
    for g in seen:
        assert g.abs().max() <= 0.05 + 1e-7
        assert g.norm() > 0.06  # by norm it would be at most 0.05: this is value clipping
    by_norm = _grads_seen_by_closure("norm", 0.05)
    for g in by_norm:
        assert g.norm() <= 0.05 * (1 + 1e-5)


def test_fit_with_lbfgs_honours_the_clip_mode() -> None:
    x, y = _data()
    results = {}
    for mode in ("norm", "value"):
        model = _net()
        fit(model, (x, y), optimizer="lbfgs", lr=0.5, epochs=2, batch_size="full",
            grad_clip=0.05, grad_clip_mode=mode, device="cpu", progress="off")  # fmt: skip
        results[mode] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert not torch.allclose(results["norm"], results["value"])


def test_amp_with_a_closure_optimizer_is_refused_before_training() -> None:
    x, y = _data()
    model = _net()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ConfigError, match=r"train\.amp must be false .*LBFGS"):
        fit(model, (x, y), optimizer="lbfgs", amp=True, epochs=1, device="cpu", progress="off")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_curve_training_clips_its_gradients() -> None:
    # Before: connectivity's curve training never clipped, whatever train.grad_clip said.
    (x, y), (x_test, y_test) = _data(120, 1), _data(60, 2)
    data = DataBundle(Split((x,), y), None, Split((x_test,), y_test), "classification",
                      num_classes=3)  # fmt: skip
    a, b = _net(1), _net(2)
    names = [n for n, _ in a.named_parameters()]
    wa = [dict(a.named_parameters())[n].detach() for n in names]
    wb = [dict(b.named_parameters())[n].detach() for n in names]
    start = Curve(wa, wb, kind="bezier", bends=1).state_dict()
    cfg = ConnectConfig(epochs=2, points=3, plane_points=0, ensemble_points=3)
    moved = {}
    for clip in (None, 1e-4):
        result = connect(_net(5), a, b, data, cfg, optim_config={"name": "sgd", "lr": 0.1},
                         train_config={"batch_size": 40, "grad_clip": clip})  # fmt: skip
        moved[clip] = max(float((result.bends[k] - start[k]).norm()) for k in start)
    steps = 2 * 3  # epochs x batches
    assert moved[1e-4] <= steps * 0.1 * 1e-4 * (1 + 1e-3)  # each step moves at most lr * clip
    assert moved[None] > 100 * moved[1e-4]


def test_the_lr_range_test_steps_through_the_same_clipping() -> None:
    x, y = _data()
    curves = {}
    for mode in ("norm", "value"):
        result = lr_range_test(_net(), (x, y), train_config={"grad_clip": 0.01,
                               "grad_clip_mode": mode, "batch_size": 32},
                               settings={"num_steps": 20, "end_lr": 1.0})  # fmt: skip
        curves[mode] = result.losses
    assert curves["norm"][0] == curves["value"][0]  # the same first batch and weights
    assert curves["norm"] != curves["value"]


class _CountsZeroGrad(torch.optim.SGD):
    """An optimizer with a zero_grad of its own, which the step must call."""

    calls = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        type(self).calls += 1
        super().zero_grad(set_to_none=set_to_none)


def test_gradients_are_cleared_as_the_optimizers_zero_grad_clears_them() -> None:
    net, (x, y) = _net(), _data()
    frozen = nn.Linear(5, 3)  # trained by no optimizer here: its gradient is left alone
    frozen(x).sum().backward()
    kept = frozen.weight.grad.clone()  # type: ignore[union-attr]
    params = [*net.parameters(), *frozen.parameters()]
    for opt_class in (torch.optim.SGD, _CountsZeroGrad):
        opt = opt_class(net.parameters(), lr=0.1)
        step = OptimizerStep(opt, params)
        step(lambda: (nn.functional.cross_entropy(net(x), y), None))
        # the next step's gradients are its own batch's, not added to the last step's
        loss = nn.functional.cross_entropy(net(x), y)
        want = torch.autograd.grad(loss, list(net.parameters()))
        step(lambda: (nn.functional.cross_entropy(net(x), y), None))
        got = [p.grad for p in net.parameters()]
        assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))  # type: ignore[arg-type]
        assert torch.equal(frozen.weight.grad, kept)  # type: ignore[arg-type]
    assert _CountsZeroGrad.calls == 2
