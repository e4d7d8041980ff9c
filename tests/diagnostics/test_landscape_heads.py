"""A landscape's few-output ``Linear`` layers run through the 16-column product: the surface
must be the plain per-point loop's, padded logits only where the loss pads them itself, and the
layers' own ``forward`` back afterwards (an error included)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from skier.config import LandscapeConfig
from skier.data.types import Split
from skier.diagnostics._heads import Heads
from skier.diagnostics.landscape import landscape
from skier.train.losses import build_loss


def _data(n: int = 700, classes: int = 10, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, 12, generator=g) + 1.5 * nn.functional.one_hot(y, 12).float()
    return Split((x,), y)


def _mlp(outputs: int = 10) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 24), nn.Tanh(),
                         nn.Linear(24, outputs)).eval()  # fmt: skip


class _TwiceHead(nn.Module):
    """The head used on two inputs and summed: its output is not the model's."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(12, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.body(x))
        return self.head(h) + 0.1 * self.head(h.flip(1))


def _loop(
    net: nn.Module,
    split: Split,
    result: object,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> tuple[np.ndarray, ...]:
    """Each point's weights written in, then one forward pass: loss and arg-max error."""
    dx, dy = result.directions  # type: ignore[attr-defined]
    params = [p for p in net.parameters() if p.requires_grad]
    base = [p.detach().clone() for p in params]
    alphas, betas = result.alphas, result.betas  # type: ignore[attr-defined]
    losses = np.zeros((len(betas), len(alphas)))
    errors = np.zeros_like(losses)
    with torch.no_grad():
        for i, b in enumerate(betas):
            for j, a in enumerate(alphas):
                for p, w, u, v in zip(params, base, dx, dy, strict=True):
                    p.copy_(w + float(a) * u + float(b) * v)
                out = net(*split.inputs)
                losses[i, j] = float(loss(out, split.targets))
                if out.shape[-1] > 1 and not split.targets.is_floating_point():
                    errors[i, j] = float((out.argmax(-1) != split.targets).float().mean())
        for p, w in zip(params, base, strict=True):
            p.copy_(w)
    return losses, errors


_CFG = LandscapeConfig(dims=2, points=5, points_y=4, ignore="none", eval_batch_size=600)


@pytest.mark.parametrize("kind", ["padded", "not-final", "built-loss"])
def test_head_product_gives_the_per_point_loops_surface(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the one-point path under test: the stacked rows (diagnostics/_rows.py) would take _mlp
    monkeypatch.setattr(sys.modules["skier.diagnostics.landscape"], "_row_plan", lambda *a: None)
    split = _data()
    net: nn.Module = _TwiceHead().eval() if kind == "not-final" else _mlp()
    found = Heads.find(net, split, 600, pads=True)
    assert found is not None
    # the 10-output layer only; padded only where the model returns its output itself
    assert [h.module.out_features for h in found.heads] == [10]
    assert found.heads[0].padded == (kind != "not-final")
    loss = build_loss("cross_entropy") if kind == "built-loss" else None
    result = landscape(net, split, _CFG, batch_points=1, loss=loss)
    assert all("forward" not in m.__dict__ for m in net.modules())
    expected, wrong = _loop(net, split, result, nn.CrossEntropyLoss())
    np.testing.assert_allclose(result.loss, expected, rtol=2e-6)
    # the same arg-max but for a near-tie that float rounding may flip (one example at most)
    assert np.max(np.abs(result.error - wrong)) * len(split) <= 1.0 + 1e-9
    batched = landscape(net, split, _CFG, batch_points=4, loss=loss)
    np.testing.assert_allclose(result.loss, batched.loss, rtol=2e-6)


def test_a_regression_head_is_never_padded(monkeypatch: pytest.MonkeyPatch) -> None:
    # eight outputs of mean squared error: the product is used, its padding is not
    g = torch.Generator().manual_seed(2)
    x = torch.randn(600, 12, generator=g)
    split = Split((x,), x[:, :8] * 0.5 + 0.1 * torch.randn(600, 8, generator=g))
    net = _mlp(8)
    monkeypatch.setattr(sys.modules["skier.diagnostics.landscape"], "_row_plan", lambda *a: None)
    found = Heads.find(net, split, 600, pads=False)
    assert found is not None and not found.heads[0].padded
    result = landscape(net, split, _CFG, batch_points=1, task="regression")
    expected, _ = _loop(net, split, result, nn.MSELoss())
    np.testing.assert_allclose(result.loss, expected, rtol=2e-6)
    assert result.error is None


def test_the_product_equals_the_layer_and_is_removed_on_error() -> None:
    split = _data(classes=10)
    net = _mlp()
    head = net[4]
    found = Heads.find(net, split, 600, pads=True)
    assert found is not None
    h = torch.tanh(net[2](torch.relu(net[0](split.inputs[0]))))
    with torch.no_grad():
        plain = head(h)
        with pytest.raises(RuntimeError, match="stop"), found.installed():
            padded = net(split.inputs[0])  # the model's output: padded to 16 columns
            few = head(h[:100])  # under 128 rows: the layer as it is
            with torch.enable_grad():
                tracked = head(h)  # with gradients on: the layer as it is
            raise RuntimeError("stop")
    assert "forward" not in head.__dict__
    assert padded.shape == (700, 16) and torch.isneginf(padded[:, 10:]).all()
    torch.testing.assert_close(padded[:, :10], plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(few, plain[:100], rtol=0, atol=0)
    assert tracked.requires_grad and torch.equal(tracked.detach(), plain)
    # a layer with under 6 or over 15 outputs is not swapped
    assert Heads.find(_mlp(3), split, 600, pads=True) is None
    assert Heads.find(_mlp(16), split, 600, pads=True) is None
