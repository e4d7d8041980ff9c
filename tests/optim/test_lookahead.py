"""Lookahead: the paper's update rule, exact resume, schedulers, closures and the train loop."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from skier.config import OptimConfig
from skier.optim import Lookahead, build_optimizer, needs_closure
from skier.train import Checkpoint, fit

A = torch.tensor([[3.0, 0.5], [0.5, 1.0], [1.0, -2.0]], dtype=torch.float64)
B = torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64)


def _grad(w: torch.Tensor) -> torch.Tensor:
    """Gradient of the least-squares loss ½‖Aw − b‖²."""
    return A.T @ (A @ w - B)


def _loss(w: torch.Tensor) -> torch.Tensor:
    return 0.5 * (A @ w - B).pow(2).sum()


@pytest.mark.parametrize(("k", "alpha"), [(5, 0.5), (3, 0.8), (1, 0.3)])
def test_matches_the_papers_update_rule(k: int, alpha: float) -> None:
    lr, steps = 0.05, 3 * k + 2  # a few k-cycles and a part-cycle
    w = nn.Parameter(torch.tensor([2.0, -1.0], dtype=torch.float64))
    opt = Lookahead(torch.optim.SGD([w], lr=lr), k=k, alpha=alpha)

    theta = w.detach().clone()  # fast weights θ
    phi = theta.clone()  # slow weights φ, φ₀ = θ₀
    for t in range(1, steps + 1):
        theta = theta - lr * _grad(theta)  # the inner optimizer: plain gradient descent
        if t % k == 0:
            phi = phi + alpha * (theta - phi)
            theta = phi.clone()
        opt.zero_grad()
        _loss(w).backward()
        opt.step()
        assert torch.allclose(w.detach(), theta, rtol=0, atol=1e-12), t
    assert opt.fast_steps == steps


def test_alpha_one_is_the_base_optimizer() -> None:
    a = nn.Parameter(torch.tensor([2.0, -1.0], dtype=torch.float64))
    b = nn.Parameter(a.detach().clone())
    wrapped = Lookahead(torch.optim.Adam([a], lr=0.1), k=2, alpha=1.0)
    plain = torch.optim.Adam([b], lr=0.1)
    for _ in range(7):
        for w, opt in ((a, wrapped), (b, plain)):
            opt.zero_grad()
            _loss(w).backward()
            opt.step()
    assert torch.equal(a, b)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def _batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(2)
    return [
        (torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)
    ]


def _steps(model: nn.Module, opt: torch.optim.Optimizer, batches: list[Any]) -> None:
    for x, y in batches:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_state_dict_round_trip_mid_cycle_continues_identically() -> None:
    batches = _batches(16)
    straight = _mlp()
    _steps(straight, Lookahead(torch.optim.Adam(straight.parameters(), lr=0.01), k=5), batches)

    cut = _mlp()
    opt = Lookahead(torch.optim.Adam(cut.parameters(), lr=0.01), k=5)
    _steps(cut, opt, batches[:7])  # stop mid-cycle: 2 fast steps since the last sync
    buffer = io.BytesIO()
    torch.save({"model": cut.state_dict(), "optimizer": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    resumed = _mlp()
    resumed.load_state_dict(saved["model"])
    # k and alpha come from the state dict, as lr does for torch's optimizers
    resumed_opt = Lookahead(torch.optim.Adam(resumed.parameters(), lr=0.5), k=2, alpha=0.1)
    resumed_opt.load_state_dict(saved["optimizer"])
    assert (resumed_opt.k, resumed_opt.alpha, resumed_opt.fast_steps) == (5, 0.5, 7)
    assert resumed_opt.param_groups is resumed_opt.base_optimizer.param_groups
    assert resumed_opt.param_groups[0]["lr"] == 0.01
    _steps(resumed, resumed_opt, batches[7:])
    for p, q in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)


def test_state_dict_holds_slow_weights_and_counter() -> None:
    model = _mlp()
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=3, alpha=0.5)
    assert opt.state_dict()["lookahead"]["slow"] == {}
    _steps(model, opt, _batches(4))
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups", "lookahead"}
    assert sd["lookahead"]["fast_steps"] == 4 and sd["lookahead"]["base_class"] == "SGD"
    assert sorted(sd["lookahead"]["slow"]) == [0, 1, 2, 3]


def test_load_state_dict_refuses_what_does_not_fit() -> None:
    model = _mlp()
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1))
    _steps(model, opt, _batches(2))
    with pytest.raises(ValueError, match=r"has no 'lookahead' entry"):
        opt.load_state_dict(opt.base_optimizer.state_dict())
    other = Lookahead(torch.optim.Adam(model.parameters()))
    with pytest.raises(ValueError, match=r"a Lookahead around SGD; this one wraps Adam"):
        other.load_state_dict(opt.state_dict())
    small = nn.Linear(2, 1)
    small_opt = Lookahead(torch.optim.SGD(small.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=r"slow weights do not match"):
        small_opt.load_state_dict(opt.state_dict())


def test_schedulers_change_the_base_lr_without_warnings() -> None:
    model = _mlp()
    base = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt = Lookahead(base, k=2)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    lrs = []
    for batch in _batches(5):
        _steps(model, opt, [batch])
        scheduler.step()  # filterwarnings = error: any scheduler warning fails the test
        lrs.append(base.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.1, 0.01, 0.01, 0.001, 0.001])
    assert opt.defaults is base.defaults and isinstance(opt.state, dict)
    restored = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    restored.load_state_dict(scheduler.state_dict())
    assert restored.get_last_lr() == scheduler.get_last_lr()


def test_zero_grad_add_param_group_and_copies() -> None:
    model = _mlp()
    opt = Lookahead(torch.optim.SGD(list(model.parameters())[:2], lr=0.1), k=2)
    _steps(model, opt, _batches(1))
    opt.zero_grad()
    assert all(p.grad is None for p in list(model.parameters())[:2])
    opt.add_param_group({"params": list(model.parameters())[2:], "lr": 0.2})
    assert len(opt.base_optimizer.param_groups) == 2 and opt.param_groups[1]["lr"] == 0.2
    twin = copy.deepcopy(opt)
    assert twin.k == 2 and twin.param_groups is twin.base_optimizer.param_groups
    assert "Lookahead(k=2, alpha=0.5" in repr(opt)


@pytest.mark.parametrize(("k", "alpha"), [(0, 0.5), (2.5, 0.5), (5, 0.0), (5, 1.5)])
def test_bad_arguments(k: Any, alpha: float) -> None:
    with pytest.raises(ValueError, match=r"must be"):
        Lookahead(torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1), k=k, alpha=alpha)


def test_lookahead_around_lbfgs_passes_the_closure() -> None:
    w = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = Lookahead(torch.optim.LBFGS([w], lr=1.0, max_iter=20), k=2, alpha=0.5)
    assert needs_closure(opt) and not needs_closure(Lookahead(torch.optim.SGD([w], lr=0.1)))

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _loss(w)
        loss.backward()
        return loss

    solution = torch.linalg.lstsq(A, B.unsqueeze(1)).solution.squeeze(1)
    opt.step(closure)  # L-BFGS solves this quadratic in one step of 20 iterations
    assert torch.allclose(w.detach(), solution, atol=1e-6)
    for _ in range(5):
        opt.step(closure)
    # 3 cycles, each ending at the solution: φ moves (1 - α) of the way 3 times, from 0
    assert torch.allclose(w.detach(), (1 - 0.5**3) * solution, atol=1e-6)


# --- inside skier's train loop --------------------------------------------------------------------


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(96, 4, generator=g)
    return x, (x @ torch.randn(4, 3, generator=g)).argmax(dim=1)


FIT: dict[str, Any] = {"epochs": 6, "batch_size": 16, "seed": 1, "device": "cpu", "progress": "off"}


def test_fit_with_a_lookahead_instance(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    model = _mlp()
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9), k=4)
    result = fit(model, data, optimizer=opt, schedule="cosine", **FIT)
    losses = result.history.column("loss")
    assert losses[-1] < losses[0]
    assert opt.fast_steps == 6 * 6
    lrs = result.history.column("lr")
    assert lrs[0] == 0.2 and lrs[-1] < 0.2  # the schedule drives the base optimizer's lr


def test_fit_with_lookahead_from_the_config(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    model = _mlp()
    result = fit(model, data, optimizer="adam", lr=0.01, lookahead=True, lookahead_k=3, **FIT)
    losses = result.history.column("loss")
    assert losses[-1] < losses[0]
    built = build_optimizer(
        _mlp().parameters(), OptimConfig(name="adam", lookahead=True, lookahead_k=3)
    )
    assert isinstance(built, Lookahead) and built.k == 3


def test_fit_resumes_lookahead_exactly(
    tmp_path: Path, data: tuple[torch.Tensor, torch.Tensor]
) -> None:
    settings = {**FIT, "lookahead": True, "lookahead_k": 5, "lr": 0.01}  # 6 steps an epoch
    full = _mlp()
    fit(full, data, optimizer="adam", callbacks=[Checkpoint(tmp_path / "full")], **settings)

    first = _mlp()
    fit(
        first, data, optimizer="adam", callbacks=[Checkpoint(tmp_path / "cut")],
        **{**settings, "epochs": 3},
    )  # fmt: skip
    resumed = _mlp()
    fit(
        resumed, data, optimizer="adam", callbacks=[Checkpoint(tmp_path / "cut")],
        resume=tmp_path / "cut" / "last.pt", **settings,
    )  # fmt: skip
    for p, q in zip(full.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)
