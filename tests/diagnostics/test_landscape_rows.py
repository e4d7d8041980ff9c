"""A landscape's rows evaluated as stacked passes (diagnostics/_rows.py): the surface must be the
plain per-point loop's (torch as the oracle) for every model the plan takes, a model it must
refuse falls back to the one-point path with the same result, and the model is left exactly as
it was (an error included)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from skier.config import LandscapeConfig, ModelConfig
from skier.data.types import Split
from skier.diagnostics._rows import RowPlan
from skier.diagnostics.landscape import landscape
from skier.models import build_model
from skier.train.losses import build_loss

from .test_landscape_heads import _loop

# 11 points along alpha: two stacked chunks of points a row (8 + 3) over 3 blocks of examples
_CFG = LandscapeConfig(dims=2, points=11, points_y=3, ignore="none", eval_batch_size=4096)
_WEIGHTS = [0.5, 2.0, 1.0, 1.5, 0.7, 1.0, 1.2, 0.9, 1.1, 3.0]
_LANDSCAPE = sys.modules["skier.diagnostics.landscape"]


def _data(n: int = 700, classes: int = 10, features: int = 12, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, features, generator=g)
    x[:, :classes] += 1.5 * nn.functional.one_hot(y, classes).float()
    return Split((x,), y)


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pre = nn.Linear(12, 12)
        self.inp = nn.Linear(12, 32)
        self.block = nn.Sequential(nn.Linear(32, 32), nn.GELU(), nn.Linear(32, 32))
        self.head = nn.Linear(32, 10)
        self.side = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.tanh(self.pre(x)) + x  # the data read by an addition, then by a Linear
        h = torch.relu(self.inp(x))
        h = h + self.block(h)  # the skip reads h: the activation before it is not in place
        return self.head(nn.functional.silu(h) + 0.1 * x[:, :1]) + self.side(g)


class _Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3)
        self.head = nn.Linear(40, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x.unsqueeze(1))).flatten(1))


def _model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "bench-mlp":  # skier's MLP, as bench_reference_tools builds it
        return build_model(ModelConfig(hidden_sizes=[128]), input_shape=(12,), output_size=10)
    if kind == "deeper":
        return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 24), nn.LeakyReLU(0.2),
                             nn.Linear(24, 10))  # fmt: skip
    if kind == "tanh":
        return nn.Sequential(nn.Flatten(), nn.Linear(12, 32), nn.Tanh(), nn.Linear(32, 10))
    if kind == "residual":
        return _Residual()
    if kind == "regression":
        return nn.Sequential(nn.Linear(12, 32), nn.Sigmoid(), nn.Linear(32, 3))
    if kind == "batch-norm":
        return nn.Sequential(nn.Linear(12, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    if kind == "cnn":
        return _Conv()
    assert kind == "hooked"
    net = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 10))
    net[1].register_forward_hook(lambda m, i, o: o * 0.5)  # changes the output: must be run
    return net


_LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _plan(net: nn.Module, split: Split, **kwargs: object) -> RowPlan | None:
    params = [p for p in net.parameters() if p.requires_grad]
    base = [p.detach().clone() for p in params]
    dirs = [[torch.randn_like(p) for p in params] for _ in range(2)]
    return RowPlan.find(net.eval(), split, params, base, dirs, loss=None, classification=True,
                        **kwargs)  # type: ignore[arg-type]  # fmt: skip


def _state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _same_state(net: nn.Module, saved: dict[str, torch.Tensor]) -> bool:
    now = net.state_dict()
    return all(torch.equal(now[k], v) for k, v in saved.items())


@pytest.mark.parametrize(
    ("kind", "loss"),
    [("bench-mlp", None), ("deeper", None), ("tanh", None), ("residual", None),
     ("deeper", "weighted"), ("regression", None), ("tanh", "smoothed")],
)  # fmt: skip
def test_stacked_rows_give_the_per_point_loops_surface(kind: str, loss: str | None) -> None:
    regression = kind == "regression"
    split = _data()
    if regression:
        x = split.inputs[0]
        split = Split((x,), torch.stack([x[:, 0] - x[:, 1], x[:, 2] * 0.5, x[:, 3]], dim=1))
    net = _model(kind).eval()
    assert _plan(net, split) is not None  # the stacked path is the one under test
    built = {
        "weighted": build_loss("cross_entropy", options={"class_weights": _WEIGHTS}),
        "smoothed": build_loss("cross_entropy", options={"label_smoothing": 0.1}),
    }.get(loss or "")
    oracle: _LossFn = {
        "weighted": nn.CrossEntropyLoss(weight=torch.tensor(_WEIGHTS)),
        "smoothed": nn.CrossEntropyLoss(label_smoothing=0.1),
    }.get(loss or "", nn.MSELoss() if regression else nn.CrossEntropyLoss())
    saved = _state(net)
    result = landscape(net, split, _CFG, batch_points=1, loss=built,
                       task="regression" if regression else None)  # fmt: skip
    assert _same_state(net, saved) and all("forward" not in m.__dict__ for m in net.modules())
    expected, wrong = _loop(net, split, result, oracle)
    np.testing.assert_allclose(result.loss, expected, rtol=2e-6)
    if regression:
        assert result.error is None
    else:  # the same arg-max but for a near-tie that float rounding may flip (one example)
        counts = np.rint(result.error * len(split)), np.rint(wrong * len(split))
        assert np.max(np.abs(counts[0] - counts[1])) <= 1
        assert np.mean(counts[0] != counts[1]) < 0.1


@pytest.mark.parametrize("kind", ["batch-norm", "cnn", "hooked"])
def test_a_model_outside_the_allow_list_keeps_the_one_point_path(kind: str) -> None:
    split = _data()
    net = _model(kind).eval()
    assert _plan(net, split) is None
    saved = _state(net)
    result = landscape(net, split, _CFG, batch_points=1)
    assert _same_state(net, saved)
    expected, wrong = _loop(net, split, result, nn.CrossEntropyLoss())
    np.testing.assert_allclose(result.loss, expected, rtol=2e-6)
    assert np.max(np.abs(result.error - wrong)) * len(split) <= 1.0 + 1e-9


def test_stacked_rows_equal_the_one_point_path(monkeypatch: pytest.MonkeyPatch) -> None:
    split = _data(n=900)
    net = _model("residual").eval()
    stacked = landscape(net, split, _CFG, batch_points=1)
    monkeypatch.setattr(_LANDSCAPE, "_row_plan", lambda *args: None)
    plain = landscape(net, split, _CFG, batch_points=1)
    np.testing.assert_allclose(stacked.loss, plain.loss, rtol=2e-6)
    assert np.max(np.abs(stacked.error - plain.error)) * len(split) <= 1.0 + 1e-9


def test_exact_arg_max_ties_are_counted_as_argmax_counts_them() -> None:
    # a zero head with zero bias: every logit is 0 at every point (its filter-normalized
    # direction is zero too), so argmax says class 0 for every example, wrong for 90% of them
    split = _data()
    net = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    with torch.no_grad():
        net[2].weight.zero_()
        net[2].bias.zero_()
    cfg = _CFG.model_copy(update={"ignore": "biasbn", "points": 5})
    result = landscape(net, split, cfg, batch_points=1)
    expected = int((split.targets != 0).sum()) / len(split)
    np.testing.assert_array_equal(result.error, np.full_like(result.error, expected))
    # the stacked count cannot order a tie: it hands every such point back
    params = list(net.parameters())
    base = [p.detach().clone() for p in params]
    plan = RowPlan.find(net, split, params, base, result.directions, loss=None,
                        classification=True)  # fmt: skip
    assert plan is not None
    _, _, again = plan.row(base, result.directions, result.alphas, 0.0)
    assert again == list(range(len(result.alphas)))


def test_the_model_is_left_as_it_was_after_an_error() -> None:
    split = _data()
    net = _model("deeper").eval()
    net.train()  # a mode to restore too
    saved = _state(net)

    def stop(state: dict[str, object]) -> None:
        raise RuntimeError("stop after the first row")

    with pytest.raises(RuntimeError, match="stop after"):
        landscape(net, split, _CFG, batch_points=1, on_row=stop)
    assert _same_state(net, saved) and net.training
    assert all("forward" not in m.__dict__ for m in net.modules())


def test_the_plan_refuses_what_it_cannot_evaluate() -> None:
    split = _data()
    plain = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    assert _plan(plain, split) is not None
    dropout = nn.Sequential(nn.Linear(12, 32), nn.Dropout(0.5), nn.Linear(32, 10)).train()
    assert _plan(dropout, split) is not None  # set to eval by _plan: taken
    dropout[1].train()
    params = [p for p in dropout.parameters()]
    dirs = [[torch.zeros_like(p) for p in params]]
    base = [p.detach() for p in params]
    assert (
        RowPlan.find(dropout, split, params, base, dirs, loss=None, classification=True) is None
    )  # a training-mode dropout: random
    handle = nn.modules.module.register_module_forward_hook(lambda m, i, o: None)
    try:
        assert _plan(plain, split) is None  # a global hook
    finally:
        handle.remove()
    two = Split((split.inputs[0], split.inputs[0]), split.targets)
    assert _plan(plain, two) is None  # two inputs
