"""SAM (optim.sam) against its update written out from the paper, in fit with clipping, schedules
and resume, and every combination it refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from skier.config import OptimConfig
from skier.diagnostics.lr_range import lr_range_test
from skier.errors import ConfigError
from skier.optim import SAM, build_optimizer, has_line_search, needs_closure
from skier.train import Checkpoint, fit
from skier.train.distributed import check_settings

N, D = 24, 3


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3 + 0.1 * torch.randn(N, 1, generator=g)


def _model() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(D, 1)


def _by_hand(
    steps: int, *, rho: float, lr: float, momentum: float = 0.0, clip: float | None = None,
    adaptive: bool = False,
) -> list[torch.Tensor]:  # fmt: skip
    """Foret et al. (2021), Algorithm 1, with plain SGD (+ heavy-ball momentum) as the base:
    e = rho g / ||g||_2 at w (ASAM: rho |w|² g / || |w| g ||), g_SAM = ∇L(w + e), then the base
    step from w with g_SAM (clipped by its norm when ``clip``, as torch's clip_grad_norm_)."""
    x, y = _data()
    start = _model()
    w = [start.weight.detach().clone(), start.bias.detach().clone()]
    bufs: list[torch.Tensor] | None = None

    def grad(params: list[torch.Tensor]) -> list[torch.Tensor]:
        params = [p.clone().requires_grad_(True) for p in params]
        loss = ((x @ params[0].T + params[1] - y) ** 2).mean()
        return list(torch.autograd.grad(loss, params))

    for _ in range(steps):
        g = grad(w)
        t = [p.abs() * gi if adaptive else gi for p, gi in zip(w, g, strict=True)]
        norm = torch.sqrt(sum((ti**2).sum() for ti in t))  # type: ignore[arg-type]
        scale = rho / (norm + 1e-12)
        e = [(p.abs() * ti if adaptive else ti) * scale for p, ti in zip(w, t, strict=True)]
        g_sam = grad([p + ei for p, ei in zip(w, e, strict=True)])
        if clip is not None:
            total = torch.sqrt(sum((gi**2).sum() for gi in g_sam))  # type: ignore[arg-type]
            coef = min(1.0, float(clip / (total + 1e-6)))
            g_sam = [gi * coef for gi in g_sam]
        if bufs is not None:
            g_sam = [momentum * b + gi for b, gi in zip(bufs, g_sam, strict=True)]
        bufs = g_sam
        w = [p - lr * b for p, b in zip(w, bufs, strict=True)]
    return w


def _fit_sam(epochs: int, **kw: Any) -> nn.Linear:
    model = _model()
    fit(model, _data(), optimizer="sgd", batch_size="full", epochs=epochs, device="cpu",
        progress="off", **kw)  # fmt: skip
    return model


@pytest.mark.parametrize(
    "settings",
    [
        {"rho": 0.05, "lr": 0.1},
        {"rho": 0.5, "lr": 0.05, "momentum": 0.9},
        {"rho": 0.2, "lr": 0.1, "adaptive": True},
        {"rho": 0.1, "lr": 0.1, "clip": 0.5},
    ],
)
def test_sam_takes_the_update_written_out_from_the_paper(settings: dict[str, Any]) -> None:
    want = _by_hand(3, **settings)
    kw: dict[str, Any] = {"lr": settings["lr"], "sam": settings["rho"]}
    if settings.get("momentum"):
        kw["momentum"] = settings["momentum"]
    if settings.get("adaptive"):
        kw["sam_adaptive"] = True
    if settings.get("clip"):
        kw["grad_clip"] = settings["clip"]
    model = _fit_sam(3, **kw)
    torch.testing.assert_close(model.weight.detach(), want[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(model.bias.detach(), want[1], rtol=0, atol=1e-6)
    plain = _fit_sam(3, **{k: v for k, v in kw.items() if k not in ("sam", "sam_adaptive")})
    assert not torch.allclose(plain.weight, model.weight, atol=1e-4)  # SAM is not the plain step


def test_sam_shares_the_base_param_groups_and_state() -> None:
    p = [nn.Parameter(torch.ones(2))]
    opt = build_optimizer(p, OptimConfig(name="adam", lr=0.1, sam=0.05, lookahead=True))
    assert needs_closure(opt)
    sam = opt.base_optimizer  # type: ignore[attr-defined]
    assert isinstance(sam, SAM) and sam.param_groups is sam.base_optimizer.param_groups
    sched = torch.optim.lr_scheduler.StepLR(sam, step_size=1, gamma=0.5)

    def closure() -> torch.Tensor:
        sam.zero_grad()
        loss = (p[0] ** 2).sum()
        loss.backward()
        return loss

    assert float(sam.step(closure).detach()) == 2.0  # the loss at the starting weights
    sched.step()
    assert sam.base_optimizer.param_groups[0]["lr"] == 0.05
    saved = sam.state_dict()
    other = SAM(torch.optim.Adam([nn.Parameter(torch.ones(2))], lr=0.1), rho=0.3)
    other.load_state_dict(saved)
    assert other.rho == 0.05 and other.param_groups is other.base_optimizer.param_groups
    assert torch.equal(other.state_dict()["state"][0]["exp_avg"], saved["state"][0]["exp_avg"])
    with pytest.raises(ValueError, match="a SAM around Adam; this one wraps SGD"):
        SAM(torch.optim.SGD([nn.Parameter(torch.ones(2))], lr=0.1)).load_state_dict(saved)


def test_sam_with_a_per_step_schedule_records_the_base_lr() -> None:
    lrs = []
    for extra in ({}, {"sam": 0.05}):
        model = nn.Linear(D, 1)
        result = fit(model, _data(), optimizer="sgd", lr=0.1, batch_size=8, epochs=2,
                     schedule="one_cycle", device="cpu", progress="off", **extra)  # fmt: skip
        lrs.append(result.history.steps["lr"])
    assert len(lrs[1]) == 2 * 3 and lrs[0] == lrs[1]


def test_sam_with_accumulation_is_sam_on_the_big_batch() -> None:
    weights = []
    for batch_size, accumulate in ((12, 1), (3, 4)):
        model = _model()
        fit(model, _data(), optimizer="sgd", lr=0.1, sam=0.1, batch_size=batch_size,
            accumulate=accumulate, epochs=2, device="cpu", progress="off")  # fmt: skip
        weights.append(model.weight.detach().clone())
    torch.testing.assert_close(weights[1], weights[0], rtol=1e-5, atol=1e-6)


def test_resume_with_sam_is_bit_identical(tmp_path: Path, interrupt_at: Any) -> None:
    settings: dict[str, Any] = {"optimizer": "adam", "lr": 0.01, "sam": 0.05, "batch_size": 5,
                                "epochs": 4, "schedule": "cosine", "seed": 2, "device": "cpu",
                                "progress": "off"}  # fmt: skip
    full = _model()
    fit(full, _data(), **settings)
    with pytest.raises(KeyboardInterrupt):
        fit(_model(), _data(), callbacks=[Checkpoint(tmp_path), interrupt_at(3)], **settings)
    resumed = nn.Linear(D, 1)
    fit(resumed, _data(), callbacks=[Checkpoint(tmp_path)], resume=tmp_path / "last.pt",
        **settings)  # fmt: skip
    assert torch.equal(resumed.weight, full.weight) and torch.equal(resumed.bias, full.bias)


def test_what_sam_refuses() -> None:
    data = _data()
    quiet: dict[str, Any] = {"epochs": 1, "device": "cpu", "progress": "off"}
    with pytest.raises(ConfigError, match=r"optim.sam must be null with optim.name 'lbfgs'"):
        fit(_model(), data, optimizer="lbfgs", sam=0.05, **quiet)
    with pytest.raises(ValueError, match="must not need a closure of its own; got LBFGS"):
        SAM(torch.optim.LBFGS(_model().parameters()))
    with pytest.raises(ConfigError, match=r"train.amp must be false with optim.name SAM"):
        fit(_model(), data, optimizer="sgd", sam=0.05, amp=True, **quiet)
    with pytest.raises(ConfigError, match=r"optim.sam_adaptive is a setting of SAM, which is off"):
        fit(_model(), data, optimizer="sgd", sam_adaptive=True, **quiet)
    with pytest.raises(ConfigError, match=r"optim.sam must be null when fit\(\) is given an opt"):
        model = _model()
        fit(model, data, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), sam=0.1, **quiet)
    with pytest.raises(ConfigError, match=r"optim.sam must be greater than 0"):
        fit(_model(), data, optimizer="sgd", sam=0.0, **quiet)
    with pytest.raises(ConfigError, match=r"optim.name must be an optimizer whose step needs no"):
        lr_range_test(_model(), data, optim_config={"name": "sgd", "sam": 0.05})
    with pytest.raises(RuntimeError, match=r"SAM\.step needs a closure"):
        SAM(torch.optim.SGD(_model().parameters(), lr=0.1)).step()
    # Distributed: SAM reads only the all-reduced gradients, so it is not refused (a 2-rank
    # test in tests/train/test_accumulate.py); L-BFGS's line search reads each rank's own loss.
    lbfgs = build_optimizer(_model().parameters(), OptimConfig(name="lbfgs", lr=0.1))
    sam = build_optimizer(_model().parameters(), OptimConfig(name="sgd", lr=0.1, sam=0.1))
    settings: dict[str, Any] = {"world_size": 2, "sampling": "uniform", "batch_size": 8,
                                "device": "cpu", "in_memory": True}  # fmt: skip
    assert not check_settings(**settings, line_search=has_line_search(sam))
    assert check_settings(**settings, line_search=has_line_search(lbfgs))[0].startswith(
        "optim.name must not be an optimizer with a line search (lbfgs)"
    )


def test_sam_trains_the_curve_of_mode_connectivity() -> None:
    # Curve training takes its steps through OptimizerStep: SAM's closure runs there as in fit
    # (the point t on the curve is drawn once a step, so both passes see the same point).
    from skier.config import ConnectConfig
    from skier.data.types import DataBundle, Split
    from skier.diagnostics.connectivity import connect

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(80, D, generator=g), torch.randint(0, 2, (80,), generator=g)
    data = DataBundle(Split((x[:60],), y[:60]), None, Split((x[60:],), y[60:]),
                      "classification", num_classes=2)  # fmt: skip
    ends = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        ends.append(nn.Sequential(nn.Linear(D, 8), nn.ReLU(), nn.Linear(8, 2)))
    cfg = ConnectConfig(epochs=1, points=3, plane_points=0, ensemble_points=3)
    bends = []
    for extra in ({}, {"sam": 0.1}):
        result = connect(ends[0], ends[0], ends[1], data, cfg,
                         optim_config={"name": "sgd", "lr": 0.1, **extra},
                         train_config={"batch_size": 20})  # fmt: skip
        bends.append(result.bends)
    assert any(not torch.allclose(bends[0][k], bends[1][k]) for k in bends[0])
