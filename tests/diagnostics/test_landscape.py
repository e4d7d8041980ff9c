"""Loss landscapes: filter normalization's defining property, exactness against a direct
evaluation, the caller's model left alone, batched = per-point, resumable grids, interpolation
with batch-norm statistics recomputed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from skier.config import LandscapeConfig, validate_model
from skier.data.types import Split
from skier.diagnostics.landscape import (
    direction_between,
    interpolate,
    landscape,
    normalize_direction,
    random_direction,
    recompute_batch_norm,
)
from skier.errors import ConfigError, DataError, ModelError
from skier.train import evaluate


def _blobs(n: int = 240, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 6, generator=g) + 2.0 * nn.functional.one_hot(y, 6).float()
    return Split((x,), y)


def _bn_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3)
    )


def _trained_bn_net(split: Split) -> nn.Sequential:
    net = _bn_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(net(*split.inputs), split.targets).backward()
        opt.step()
    return net


def _snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "rng": torch.get_rng_state(),
    }


def _assert_same(model: nn.Module, snap: dict[str, object]) -> None:
    state = snap["state"]
    assert isinstance(state, dict)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    for p, g in zip(model.parameters(), snap["grads"], strict=True):  # type: ignore[call-overload]
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)
    assert [m.training for m in model.modules()] == snap["modes"]
    assert torch.equal(torch.get_rng_state(), snap["rng"])  # type: ignore[arg-type]


def test_filter_normalization_scales_each_row_to_its_weights() -> None:
    w = [torch.randn(4, 3, 2, 2), torch.randn(4), torch.randn(5, 7)]
    d = normalize_direction([torch.randn_like(t) for t in w], w)
    for dt, wt in ((d[0], w[0]), (d[2], w[2])):
        rows_d = dt.reshape(dt.shape[0], -1).norm(dim=1)
        rows_w = wt.reshape(wt.shape[0], -1).norm(dim=1)
        torch.testing.assert_close(rows_d, rows_w)
    assert torch.count_nonzero(d[1]) == 0  # biasbn: 1-D tensors get no direction
    kept = normalize_direction([torch.randn(4)], [torch.full((4,), 3.0)], ignore="none")
    torch.testing.assert_close(kept[0].abs(), torch.full((4,), 3.0))
    layer = normalize_direction([torch.randn(5, 7)], [w[2]], normalization="layer")
    torch.testing.assert_close(layer[0].norm(), w[2].norm())
    raw = torch.randn(5, 7)
    assert torch.equal(normalize_direction([raw], [w[2]], normalization="none")[0], raw)


def _rescale_into_bn(net: nn.Sequential, factor: float) -> nn.Sequential:
    """The same function with the layer before batch norm scaled by ``factor``."""
    scaled = _bn_net()
    scaled.load_state_dict(net.state_dict())
    with torch.no_grad():
        scaled[0].weight.mul_(factor)
        scaled[0].bias.mul_(factor)
        bn = scaled[1]
        assert isinstance(bn, nn.BatchNorm1d)
        assert bn.running_mean is not None and bn.running_var is not None
        bn.running_mean.mul_(factor)
        bn.running_var.mul_(factor**2)
    return scaled


@pytest.mark.parametrize("normalization", ["filter", "layer"])
def test_scaling_a_layer_before_batch_norm_leaves_the_normalized_curve_unchanged(
    normalization: str,
) -> None:
    split = _blobs()
    net = _trained_bn_net(split)
    scaled = _rescale_into_bn(net, 10.0)
    # The same function: the rescaling is invisible to batch norm (up to its eps).
    torch.testing.assert_close(
        evaluate(net, split)["loss"], evaluate(scaled, split)["loss"], rtol=1e-4, atol=1e-5
    )
    cfg = LandscapeConfig(dims=1, points=21, normalization=normalization)  # type: ignore[arg-type]
    curve = landscape(net, split, cfg).loss
    curve_scaled = landscape(scaled, split, cfg).loss
    np.testing.assert_allclose(curve_scaled, curve, rtol=1e-2)
    # Without normalization the same Gaussian is a far smaller step for the scaled layer.
    raw = cfg.model_copy(update={"normalization": "none"})
    raw_curve = landscape(net, split, raw).loss
    raw_scaled = landscape(scaled, split, raw).loss
    assert np.max(np.abs(raw_scaled - raw_curve) / raw_curve) > 0.05


def test_points_match_a_direct_evaluation_and_the_model_is_left_alone() -> None:
    split = _blobs()
    net = _trained_bn_net(split)
    net.train()
    net[0].weight.grad = torch.ones_like(net[0].weight)  # a stale gradient must survive too
    snap = _snapshot(net)
    cfg = LandscapeConfig(dims=2, points=5, points_y=3, seed=3)
    result = landscape(net, split, cfg)
    _assert_same(net, snap)
    assert result.loss.shape == (3, 5) and result.error is not None
    assert result.center_loss == pytest.approx(evaluate(net, split)["loss"], rel=1e-6)
    # Rebuild one off-centre point by hand from the same seeded directions.
    g = torch.Generator().manual_seed(3)
    d1 = random_direction(net, generator=g)
    d2 = random_direction(net, generator=g)
    for got, want in zip(result.directions, (d1, d2), strict=True):
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b)
    moved = _bn_net()
    moved.load_state_dict(net.state_dict())
    with torch.no_grad():
        for p, a, b in zip(moved.parameters(), d1, d2, strict=True):
            p.add_(1.0 * a + (-1.0) * b)  # alpha = 1 (last column), beta = -1 (first row)
    direct = evaluate(moved, split)
    assert result.loss[0, 4] == pytest.approx(direct["loss"], rel=1e-6)
    assert result.error[0, 4] == pytest.approx(direct["error"], abs=1e-9)
    assert result.minimum["loss"] == pytest.approx(np.nanmin(result.loss))


def test_batched_points_equal_one_point_at_a_time() -> None:
    split = _blobs()
    net = _trained_bn_net(split)
    cfg = LandscapeConfig(dims=2, points=6, points_y=4)
    one = landscape(net, split, cfg, batch_points=1)
    many = landscape(net, split, cfg, batch_points=4)
    np.testing.assert_allclose(many.loss, one.loss, rtol=1e-5)
    assert many.error is not None and one.error is not None
    np.testing.assert_array_equal(many.error, one.error)


def test_regression_landscape_has_loss_and_no_error() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 3, generator=g)
    split = Split((x,), x.sum(dim=1, keepdim=True))
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    result = landscape(net, split, LandscapeConfig(dims=1, points=5), batch_points=5)
    assert result.error is None
    assert result.center_loss == pytest.approx(evaluate(net, split)["loss"], rel=1e-6)


def test_a_stopped_grid_resumes_where_it_stopped() -> None:
    split = _blobs()
    net = _trained_bn_net(split)
    cfg = LandscapeConfig(dims=2, points=4, points_y=5)
    full = landscape(net, split, cfg)
    saved: list[dict[str, object]] = []

    def kill_after_two_rows(partial: dict[str, object]) -> None:
        saved.append(partial)
        if partial["rows_done"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        landscape(net, split, cfg, on_row=kill_after_two_rows)
    rows_seen: list[int] = []
    resumed = landscape(
        net, split, cfg, resume=saved[-1], on_row=lambda p: rows_seen.append(int(p["rows_done"]))
    )
    assert rows_seen == [3, 4, 5]  # rows 1-2 were not evaluated again
    np.testing.assert_array_equal(resumed.loss, full.loss)
    other = LandscapeConfig(dims=2, points=4, points_y=5, seed=1)
    with pytest.raises(ConfigError, match="same model and settings"):
        landscape(net, split, other, resume=saved[-1])


def test_per_batch_surfaces_differ_between_mini_batches() -> None:
    split = _blobs()
    net = _trained_bn_net(split)
    cfg = LandscapeConfig(dims=2, points=5, per_batch=True, batch_size=16)
    result = landscape(net, split, cfg)
    assert [b.examples for b in result.batches] == [16, 16]
    assert not np.allclose(result.batches[0].loss, result.batches[1].loss)
    assert "batch1_loss" in result.to_csv().splitlines()[0]
    with pytest.raises(DataError, match=r"landscape\.batch_size must leave room"):
        landscape(net, split, cfg.model_copy(update={"batch_size": 200}))


def test_subset_is_fixed_by_the_seed() -> None:
    split = _blobs()
    net = _trained_bn_net(split)
    cfg = LandscapeConfig(dims=1, points=5, subset=50, seed=4)
    a, b = landscape(net, split, cfg), landscape(net, split, cfg)
    np.testing.assert_array_equal(a.loss, b.loss)
    assert a.surface.examples == 50
    c = landscape(net, split, cfg.model_copy(update={"seed": 5}))
    assert not np.array_equal(a.loss, c.loss)


def test_interpolation_ends_are_the_two_models() -> None:
    split = _blobs()
    start = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    end = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    snap = _snapshot(start)
    cfg = LandscapeConfig(dims=1, direction="run", points=11, xrange=(0.0, 1.0))
    result = interpolate(start, end, split, cfg, labels=("A", "B"))
    _assert_same(start, snap)
    assert result.loss[0] == pytest.approx(evaluate(start, split)["loss"], rel=1e-6)
    assert result.loss[-1] == pytest.approx(evaluate(end, split)["loss"], rel=1e-6)
    assert result.labels == ("A", "B")
    assert LandscapeConfig(direction="init").xrange == (-0.25, 1.25)  # past both ends
    step = direction_between(start, end, start)
    torch.testing.assert_close(step[0], end[0].weight - start[0].weight)


def test_interpolation_recomputes_batch_norm_statistics() -> None:
    split = _blobs()
    a, b = _trained_bn_net(split), _bn_net(seed=1)
    cfg = LandscapeConfig(dims=1, direction="run", points=3, xrange=(0.0, 1.0))
    result = interpolate(a, b.state_dict(), split, cfg)
    # At alpha = 0 the weights are a's, with statistics re-estimated on the data.
    exact = _bn_net()
    exact.load_state_dict(a.state_dict())
    recompute_batch_norm(exact, split, generator=torch.Generator().manual_seed(0))
    bn = exact[1]
    assert isinstance(bn, nn.BatchNorm1d)
    with torch.no_grad():
        h = exact[0](split.inputs[0])
    torch.testing.assert_close(bn.running_mean, h.mean(dim=0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, h.var(dim=0), rtol=1e-3, atol=1e-5)
    assert result.loss[0] == pytest.approx(evaluate(exact, split)["loss"], rel=1e-5)
    interpolated_stats = interpolate(
        a, b.state_dict(), split, cfg.model_copy(update={"recompute_bn": False})
    )
    assert interpolated_stats.loss[0] == pytest.approx(evaluate(a, split)["loss"], rel=1e-6)


def test_bad_input_is_refused_before_anything_runs() -> None:
    split = _blobs()
    net = nn.Sequential(nn.Linear(6, 3))
    with pytest.raises(ConfigError, match=r"landscape\.direction must be 'random' or 'hessian'"):
        landscape(net, split, LandscapeConfig(direction="init"))
    with pytest.raises(
        ConfigError, match=r"landscape.xrange must be \[low, high\] .*got \[1.0, -1.0\]"
    ):
        landscape(net, split, {"xrange": [1, -1]})
    with pytest.raises(ConfigError, match=r"^cli: landscape.dims must be 1 with direction 'run'"):
        validate_model(LandscapeConfig, {"direction": "run", "dims": 2}, "cli", prefix="landscape.")
    with pytest.raises(ModelError, match="other must have the model's architecture"):
        interpolate(net, nn.Sequential(nn.Linear(6, 4)), split, LandscapeConfig(dims=1))
    with pytest.raises(ModelError, match="every parameter of the model"):
        interpolate(net, {"0.weight": torch.zeros(3, 6)}, split, LandscapeConfig(dims=1))
    with pytest.raises(ConfigError, match="one direction per dimension"):
        landscape(net, split, LandscapeConfig(dims=2), directions=[random_direction(net)])


def test_interpolation_without_settings_is_a_line() -> None:
    # README's `interpolate(model_a, model_b, data)`: no settings, or settings without dims,
    # mean a line; a 2-D setting is still refused with its field named.
    split = _blobs()
    start = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    end = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    line = interpolate(start, end, split)
    assert line.loss.ndim == 1 and len(line.loss) == LandscapeConfig().points
    assert len(interpolate(start, end, split, {"points": 5}).loss) == 5
    with pytest.raises(ConfigError, match=r"landscape\.dims must be 1"):
        interpolate(start, end, split, {"dims": 2})


class _ConvNet(nn.Module):
    """A convolution on the images, then a linear layer used on two inputs (its input depends
    on the weights: it must not be factored), with a frozen bias on the first layer."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.conv.bias.requires_grad_(False)
        self.head = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv(x)).flatten(1)
        return self.head(h) + 0.1 * self.head(h.flip(1))


def _loop(net: nn.Module, split: Split, result: object) -> np.ndarray:
    """The hand-written loop: each point's weights written in, then a forward pass."""
    dx, dy = result.directions  # type: ignore[attr-defined]
    params = [p for p in net.parameters() if p.requires_grad]
    base = [p.detach().clone() for p in params]
    alphas, betas = result.alphas, result.betas  # type: ignore[attr-defined]
    out = np.zeros((len(betas), len(alphas)))
    with torch.no_grad():
        for i, b in enumerate(betas):
            for j, a in enumerate(alphas):
                for p, w, u, v in zip(params, base, dx, dy, strict=True):
                    p.copy_(w + float(a) * u + float(b) * v)
                out[i, j] = float(nn.functional.cross_entropy(net(*split.inputs), split.targets))
        for p, w in zip(params, base, strict=True):
            p.copy_(w)
    return out


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_factored_points_equal_a_per_point_loop(kind: str) -> None:
    # One point at a time, the layers that see only the data are summed from outputs computed
    # once; the surface must still be the plain loop's, and the model left as it was.
    g = torch.Generator().manual_seed(1)
    if kind == "conv":
        net: nn.Module = _ConvNet().eval()
        split = Split((torch.randn(700, 1, 4, 4, generator=g),), torch.arange(700) % 3)
    else:
        split = _blobs(700)
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    snap = _snapshot(net)
    cfg = LandscapeConfig(dims=2, points=5, points_y=4, ignore="none", eval_batch_size=256)
    result = landscape(net, split, cfg, batch_points=1)
    _assert_same(net, snap)
    assert all("forward" not in m.__dict__ for m in net.modules())
    np.testing.assert_allclose(result.loss, _loop(net, split, result), rtol=2e-6)
    batched = landscape(net, split, cfg, batch_points=4)
    np.testing.assert_allclose(result.loss, batched.loss, rtol=2e-6)
    np.testing.assert_array_equal(result.error, batched.error)
    line = LandscapeConfig(dims=1, points=7, eval_batch_size=256, per_batch=True, batch_size=64)
    one, many = (
        landscape(net, split, line, batch_points=1),
        landscape(net, split, line, batch_points=7),
    )
    for a, b in zip([one.surface, *one.batches], [many.surface, *many.batches], strict=True):
        np.testing.assert_allclose(a.loss, b.loss, rtol=2e-6)


def test_only_layers_that_see_the_data_are_factored() -> None:
    from skier.diagnostics._factored import InputLayers

    net = _ConvNet().eval()
    split = Split((torch.randn(50, 1, 4, 4),), torch.arange(50) % 3)
    params = [p for p in net.parameters() if p.requires_grad]
    dirs = [[torch.randn_like(p) for p in params]]
    layers = InputLayers.find(net, split, params, dirs, batch_size=16)
    assert layers is not None
    assert [layer.module for layer in layers.layers] == [net.conv]
    assert len(layers.layers[0].pieces) == 4  # one per evaluation batch (16, 16, 16, 2)
