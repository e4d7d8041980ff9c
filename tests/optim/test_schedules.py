"""Learning-rate schedules, read back from the ``lr`` column of short fits."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch
from torch import nn

from skier.config import ScheduleConfig
from skier.optim import build_scheduler
from skier.train import fit


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 10, generator=g)
    return x, torch.randint(0, 2, (64,), generator=g)


def _lrs(data: Any, epochs: int, lr: float = 0.1, **schedule: Any) -> tuple[list[float], float]:
    """The lr column of a fit, and the optimizer's lr after it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    result = fit(
        model,
        data,
        optimizer=opt,
        schedule=schedule,
        epochs=epochs,
        batch_size="full",
        device="cpu",
    )
    return result.history.column("lr"), float(opt.param_groups[0]["lr"])


def _cosine(base: float, low: float, k: int, period: int) -> float:
    return low + (base - low) * (1 + math.cos(math.pi * k / period)) / 2


def test_constant_is_no_scheduler(data: Any) -> None:
    opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1)
    assert build_scheduler(opt, ScheduleConfig(), epochs=10) is None
    lrs, after = _lrs(data, 4)
    assert lrs == pytest.approx([0.1] * 4) and after == pytest.approx(0.1)


def test_cosine_anneals_to_min_lr(data: Any) -> None:
    lrs, after = _lrs(data, 5, name="cosine", min_lr=0.01)
    assert lrs == pytest.approx([_cosine(0.1, 0.01, k, 5) for k in range(5)])
    assert all(a > b for a, b in itertools.pairwise(lrs))
    assert after == pytest.approx(0.01)  # reached when the last epoch ends
    assert lrs[-1] > 0.01  # note: so the last epoch itself trains above min_lr


def test_step_decays_by_gamma_every_step_size(data: Any) -> None:
    lrs, after = _lrs(data, 7, name="step", step_size=3, gamma=0.5)
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025])
    assert after == pytest.approx(0.025)


def test_exponential(data: Any) -> None:
    lrs, _ = _lrs(data, 4, name="exponential", gamma=0.5)
    assert lrs == pytest.approx([0.1, 0.05, 0.025, 0.0125])


def test_warmup_ramps_linearly_to_the_base_lr(data: Any) -> None:
    lrs, after = _lrs(data, 6, lr=0.2, warmup_epochs=3)
    assert lrs == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2])
    assert after == pytest.approx(0.2)


def test_warmup_then_cosine(data: Any) -> None:
    lrs, after = _lrs(data, 6, lr=0.3, name="cosine", warmup_epochs=2, min_lr=0.0)
    assert lrs[:2] == pytest.approx([0.1, 0.2])
    assert lrs[2:] == pytest.approx([_cosine(0.3, 0.0, k, 4) for k in range(4)])
    assert after == pytest.approx(0.0, abs=1e-12)


def test_warmup_then_step(data: Any) -> None:
    lrs, _ = _lrs(data, 6, lr=0.4, name="step", step_size=2, gamma=0.5, warmup_epochs=1)
    assert lrs == pytest.approx([0.2, 0.4, 0.4, 0.2, 0.2, 0.1])


def test_warmup_longer_than_the_run_is_clipped() -> None:
    opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.3)
    sched = build_scheduler(opt, ScheduleConfig(warmup_epochs=10), epochs=3)
    assert sched is not None
    seen = []
    for _ in range(3):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.1, 0.2, 0.3])  # reaches the base lr on the last epoch


def test_bad_schedule_settings(data: Any) -> None:
    from skier.errors import ConfigError

    model = nn.Linear(10, 2)
    with pytest.raises(ConfigError, match=r"schedule\.name must be") as info:
        fit(model, data, schedule="cosin", device="cpu")
    assert "cosine" in str(info.value)
    with pytest.raises(ConfigError, match=r"schedule.gamma must be greater than 0"):
        fit(model, data, schedule={"name": "step", "gamma": 0.0}, device="cpu")
