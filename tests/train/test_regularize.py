"""Explicit L1/L2 penalties, gradient clipping by value, and closure optimizers (L-BFGS)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch
from torch import nn

from skier.errors import ConfigError
from skier.train import evaluate, fit
from skier.train.regularize import Penalty, penalized_parameters

CPU = {"device": "cpu", "progress": "off"}
Data = tuple[torch.Tensor, torch.Tensor]


def test_default_penalty_leaves_out_biases_and_norm_layers() -> None:
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))
    names = [n for n, _ in penalized_parameters(net, "weights")]
    assert names == ["0.weight", "3.weight"]
    everything = [n for n, _ in penalized_parameters(net, "all")]
    assert everything == [n for n, _ in net.named_parameters()]


def test_penalty_value_matches_its_formula() -> None:
    net = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    penalty = Penalty(net, l1=0.1, l2=0.01, penalize="weights")
    weights = [net[0].weight, net[1].weight]
    expected = 0.1 * sum(w.abs().sum() for w in weights) + 0.005 * sum(
        w.square().sum() for w in weights
    )
    assert torch.allclose(penalty(), expected)


def test_l2_penalty_on_everything_equals_coupled_weight_decay_with_sgd(
    make_mlp: Any, clf_data: Data
) -> None:
    kw = {"optimizer": "sgd", "lr": 0.1, "batch_size": 32, "epochs": 3, "seed": 4, **CPU}
    a, b = make_mlp(seed=1), make_mlp(seed=1)
    fit(a, clf_data, l2=0.05, penalize="all", **kw)
    fit(b, clf_data, weight_decay=0.05, **kw)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-6), name


def test_penalty_is_logged_apart_from_the_data_loss(make_mlp: Any, clf_data: Data) -> None:
    model = make_mlp(seed=2)
    penalty = Penalty(model, l1=0.0, l2=0.5, penalize="weights")
    with torch.no_grad():
        start = float(penalty())
        data_loss = evaluate(model, clf_data)["loss"]
    # lr ~ 0: the weights stay put, so both terms are exactly known.
    result = fit(
        model, clf_data, optimizer="sgd", lr=1e-12, batch_size="full", epochs=1, l2=0.5, **CPU
    )
    row = result.history.rows[0]
    assert math.isclose(row["penalty"], start, rel_tol=1e-6)
    assert math.isclose(row["loss"], data_loss, rel_tol=1e-5)


def test_l1_drives_weights_toward_zero(make_mlp: Any, clf_data: Data) -> None:
    kw = {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "epochs": 20, **CPU}
    plain, sparse = make_mlp(seed=3), make_mlp(seed=3)
    fit(plain, clf_data, **kw)
    fit(sparse, clf_data, l1=0.01, **kw)

    def l1_norm(m: nn.Module) -> float:
        return sum(float(p.detach().abs().sum()) for n, p in m.named_parameters() if "weight" in n)

    assert l1_norm(sparse) < 0.7 * l1_norm(plain)


def test_penalty_keywords_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"regularization\.l2 must be greater than or equal to 0"):
        fit(nn.Linear(2, 2), (torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)), l2=-1, **CPU)


class _Recording(torch.optim.SGD):
    def __init__(self, params: Any) -> None:
        super().__init__(params, lr=0.1)
        self.max_abs: list[float] = []

    def step(self, closure: Any = None) -> Any:
        grads = [p.grad.abs().max() for g in self.param_groups for p in g["params"]]
        self.max_abs.append(float(torch.stack(grads).max()))
        return super().step(closure)


def test_clip_by_value_bounds_every_gradient_entry(make_mlp: Any, clf_data: Data) -> None:
    model = make_mlp(seed=5)
    opt = _Recording(model.parameters())
    fit(model, clf_data, optimizer=opt, batch_size=16, epochs=1, grad_clip=1e-3,
        grad_clip_mode="value", **CPU)  # fmt: skip
    assert opt.max_abs and max(opt.max_abs) <= 1e-3 * (1 + 1e-6)  # float32 rounding of 1e-3
    model = make_mlp(seed=5)
    free = _Recording(model.parameters())
    fit(model, clf_data, optimizer=free, batch_size=16, epochs=1, **CPU)
    assert max(free.max_abs) > 1e-2  # so the clipping above had work to do


def test_lbfgs_trains_full_batch_with_a_closure(clf_data: Data) -> None:
    torch.manual_seed(0)
    model = nn.Linear(clf_data[0].shape[1], 3)
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=20)
    result = fit(model, clf_data, optimizer=opt, batch_size="full", epochs=5, **CPU)
    losses = result.history.column("loss")
    assert losses[-1] < 0.6 * losses[0]
    assert all(b <= a + 1e-6 for a, b in itertools.pairwise(losses))
