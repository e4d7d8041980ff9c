"""Mode connectivity: the curve passes exactly through both endpoints, only the bends learn,
batch-norm statistics are re-estimated at every t, and the curve finds a lower path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from skier.config import ConnectConfig
from skier.data.types import DataBundle, Split
from skier.diagnostics.connectivity import Curve, connect, evaluate_path
from skier.diagnostics.landscape import recompute_batch_norm
from skier.errors import ConfigError, DataError, ModelError
from skier.train import evaluate


def _blobs(n: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 6, generator=g) + 2.0 * nn.functional.one_hot(y, 6).float()
    return Split((x,), y)


def _bundle() -> DataBundle:
    return DataBundle(_blobs(240, 0), None, _blobs(90, 1), "classification", num_classes=3)


def _net(seed: int, bn: bool = False) -> nn.Sequential:
    torch.manual_seed(seed)
    norm: nn.Module = nn.BatchNorm1d(16) if bn else nn.Identity()
    return nn.Sequential(nn.Linear(6, 16), norm, nn.ReLU(), nn.Linear(16, 3))


def _trained(seed: int, data: DataBundle, bn: bool = False) -> nn.Sequential:
    net = _net(seed, bn)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    x, y = data.train.inputs[0], data.train.targets
    for _ in range(80):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net


@pytest.mark.parametrize(("kind", "bends"), [("bezier", 1), ("bezier", 3), ("polychain", 1),
                                             ("polychain", 2)])  # fmt: skip
def test_the_curve_passes_exactly_through_both_endpoints(kind: str, bends: int) -> None:
    start = [torch.randn(4, 3), torch.randn(4)]
    end = [torch.randn(4, 3), torch.randn(4)]
    curve = Curve(start, end, kind=kind, bends=bends)
    with torch.no_grad():
        for p in curve.parameters():
            p.add_(torch.randn_like(p))  # trained bends, far from the line
    for got, want in ((curve.point(0.0), start), (curve.point(1.0), end)):
        for a, b in zip(got, want, strict=True):
            assert torch.equal(a, b)
    assert sum(curve.coefficients(0.37)) == pytest.approx(1.0)


def test_an_untrained_curve_is_the_straight_line() -> None:
    start, end = [torch.zeros(3)], [torch.tensor([2.0, 4.0, 6.0])]
    for kind, bends in (("bezier", 1), ("polychain", 3)):
        curve = Curve(start, end, kind=kind, bends=bends)
        for t in (0.1, 0.5, 0.8):
            torch.testing.assert_close(curve.point(t)[0], torch.lerp(start[0], end[0], t))


def test_only_the_bends_receive_gradients() -> None:
    start = [torch.randn(5, requires_grad=False)]
    end = [torch.randn(5)]
    curve = Curve(start, end, kind="bezier", bends=2)
    curve.point(0.3)[0].pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in curve.parameters())
    assert curve.start[0].grad is None and curve.end[0].grad is None
    assert not curve.start[0].requires_grad and not curve.end[0].requires_grad


@pytest.mark.slow
def test_connect_leaves_the_model_and_endpoints_alone_and_lowers_the_barrier() -> None:
    data = _bundle()
    a, b = _trained(0, data), _trained(1, data)
    template = _net(5)
    before = {k: v.clone() for k, v in template.state_dict().items()}
    a_state = {k: v.clone() for k, v in a.state_dict().items()}
    cfg = ConnectConfig(epochs=40, points=11, plane_points=5, ensemble_points=5)
    result = connect(template, a, b, data, cfg, optim_config={"name": "adam", "lr": 0.01})
    for k, v in template.state_dict().items():
        assert torch.equal(v, before[k])
    for k, v in a.state_dict().items():
        assert torch.equal(v, a_state[k])
    # t = 0 and t = 1 are the endpoints themselves, on both paths.
    for path in (result.curve, result.line):
        assert path["train_loss"][0] == pytest.approx(evaluate(a, data.train)["loss"], rel=1e-6)
        assert path["test_error"][-1] == pytest.approx(evaluate(b, data.test)["error"], abs=1e-9)
    summary = result.summary
    assert summary["line_train_loss_barrier"] > 0.05
    assert summary["curve"]["train_loss_max"] < summary["line"]["train_loss_max"]
    assert summary["barrier_reduction"] > 0.5
    assert set(result.ensemble) >= {"start", "end", "curve_ensemble", "endpoints_ensemble"}
    assert result.plane is not None and np.asarray(result.plane["train_loss"]).shape == (5, 5)
    assert len(result.epoch_losses) == 40
    assert "curve_train_loss" in result.to_csv().splitlines()[0]
    assert set(result.bends) == {f"bend0.{i}" for i in range(4)}


def test_batch_norm_statistics_are_recomputed_at_every_t() -> None:
    data = _bundle()
    a, b = _trained(0, data, bn=True), _trained(1, data, bn=True)
    mid = [torch.lerp(p, q, 0.5) for p, q in zip(a.parameters(), b.parameters(), strict=True)]
    model = _net(3, bn=True)
    found = evaluate_path(model, [mid], data.train, data.test, classification=True)
    # By hand: the midpoint weights with statistics measured on the training data.
    exact = _net(3, bn=True)
    with torch.no_grad():
        for p, v in zip(exact.parameters(), mid, strict=True):
            p.copy_(v)
    recompute_batch_norm(exact, data.train)
    want = evaluate(exact, data.train)["loss"]
    assert found["train_loss"][0] == pytest.approx(want, rel=1e-6)
    # Interpolated statistics would give another loss: the test can tell the two apart.
    interpolated = _net(3, bn=True)
    state = {k: torch.lerp(a.state_dict()[k].float(), b.state_dict()[k].float(), 0.5)
             for k in a.state_dict() if "num_batches" not in k}  # fmt: skip
    interpolated.load_state_dict(state, strict=False)
    assert abs(evaluate(interpolated, data.train)["loss"] - want) > 1e-3


def test_bad_input_is_refused() -> None:
    data = _bundle()
    a = _net(0)
    with pytest.raises(ModelError, match="end must have the model's architecture"):
        connect(a, a, nn.Sequential(nn.Linear(6, 8), nn.Identity(), nn.ReLU(), nn.Linear(8, 3)),
                data)  # fmt: skip
    with pytest.raises(ConfigError, match=r"optim\.lr must be a number"):
        connect(a, a, a, data, optim_config={"lr": "auto"})
    with pytest.raises(ConfigError, match=r"schedule\.name must not be 'plateau'"):
        connect(a, a, a, data, {"schedule": "config"}, schedule_config={"name": "plateau"})
    with pytest.raises(ConfigError, match=r"connect\.bends must be less than or equal to 8"):
        connect(a, a, a, data, {"bends": 9})
    no_test = DataBundle(_blobs(30, 0), None, None, "classification", num_classes=3)
    with pytest.raises(DataError, match="test or validation split"):
        connect(a, a, a, no_test)
