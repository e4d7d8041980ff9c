"""skier's direct call of torch's fused Adam / AdamW kernel (``optim.fused.fused_adam_step``,
taken by every ``OptimizerStep``) gives the same bits as ``optimizer.step()``, and is not taken
where ``optimizer.step()`` would do more (hooks, wrappers, a scaler, a tensor lr, no state)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.optim import optimizer as torch_optimizer

from skier.optim import SAM, Lookahead
from skier.optim.fused import fused_adam_step, grads_to_none
from skier.train.step import OptimizerStep

Make = Callable[[list[dict[str, Any]]], torch.optim.Optimizer]


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3), nn.Linear(3, 2))


def _groups(model: nn.Module, lrs: tuple[float, ...]) -> list[dict[str, Any]]:
    layers = [m for m in model if isinstance(m, nn.Linear)]
    if len(lrs) == 1:
        return [{"params": list(model.parameters()), "lr": lrs[0]}]
    return [
        {"params": list(layers[0].parameters()), "lr": lrs[0]},
        {"params": list(layers[1].parameters()) + list(layers[2].parameters()), "lr": lrs[1]},
    ]


def _forward(model: nn.Module, step: int) -> Callable[[], tuple[torch.Tensor, None]]:
    gen = torch.Generator().manual_seed(step)
    x, y = torch.randn(16, 5, generator=gen), torch.randn(16, 2, generator=gen)

    def forward() -> tuple[torch.Tensor, None]:
        out = model[0](x).tanh()
        hidden = model[2](out)
        if step % 3 == 1:  # the last layer unused: its parameters get no gradient this step
            return hidden.square().mean(), None
        return nn.functional.mse_loss(model[3](hidden), y), None

    return forward


def _same(a: torch.optim.Optimizer, b: torch.optim.Optimizer, ma: nn.Module, mb: nn.Module) -> None:
    for pa, pb in zip(ma.parameters(), mb.parameters(), strict=True):
        assert torch.equal(pa, pb)
        sa, sb = a.state.get(pa, {}), b.state.get(pb, {})
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key


CASES: dict[str, tuple[Make, tuple[float, ...]]] = {
    "adam": (lambda g: torch.optim.Adam(g, fused=True), (1e-2,)),
    "adam, weight decay, amsgrad": (
        lambda g: torch.optim.Adam(g, fused=True, weight_decay=0.1, amsgrad=True),
        (1e-2,),
    ),
    "adam, maximize, betas, eps": (
        lambda g: torch.optim.Adam(g, fused=True, betas=(0.8, 0.95), eps=1e-6, maximize=True),
        (3e-3,),
    ),
    "adamw, groups": (lambda g: torch.optim.AdamW(g, fused=True), (1e-2, 3e-2)),
    "adamw, decay, amsgrad, groups": (
        lambda g: torch.optim.AdamW(g, fused=True, weight_decay=0.3, amsgrad=True),
        (2e-2, 5e-3),
    ),
    "adam, decoupled decay": (
        lambda g: torch.optim.Adam(g, fused=True, weight_decay=0.1, decoupled_weight_decay=True),
        (1e-2, 1e-3),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("scheduled", [False, True])
def test_the_direct_step_gives_the_bits_of_torchs_step(case: str, scheduled: bool) -> None:
    make, lrs = CASES[case]
    models = [_model(), _model()]
    torch_opt, skier_opt = (make(_groups(m, lrs)) for m in models)
    scheds = [
        torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0 / (1 + s) + (s % 4) * 0.25)
        for o in (torch_opt, skier_opt)
        if scheduled
    ]
    skier_step = OptimizerStep(skier_opt, models[1].parameters())
    taken = 0
    for step in range(40):
        # torch's own step, with its hooks (the direct step must not be taken for it)
        torch_opt.zero_grad(set_to_none=True)
        _forward(models[0], step)()[0].backward()
        torch_opt.step()
        # skier's: the direct step wherever it can, torch's where it cannot
        skier_opt.zero_grad(set_to_none=True)
        _forward(models[1], step)()[0].backward()
        if fused_adam_step(skier_opt):
            taken += 1
        else:
            skier_opt.step()
        for sched in scheds:
            sched.step()
        _same(torch_opt, skier_opt, models[0], models[1])
    assert taken == 39  # every step but the first (which made the state through torch's)
    # OptimizerStep takes the same path and the same bits
    for step in range(40, 50):
        torch_opt.zero_grad(set_to_none=True)
        _forward(models[0], step)()[0].backward()
        torch_opt.step()
        skier_step(_forward(models[1], step))
        for sched in scheds:
            sched.step()
        _same(torch_opt, skier_opt, models[0], models[1])
    if scheduled:
        assert [g["lr"] for g in torch_opt.param_groups] == [
            g["lr"] for g in skier_opt.param_groups
        ]
        assert skier_opt._opt_called  # type: ignore[attr-defined]


def test_a_loaded_state_and_a_new_group_are_read_at_the_next_step() -> None:
    models = [_model(), _model()]
    opts = [torch.optim.Adam(_groups(m, (1e-2, 3e-2))[:1], fused=True) for m in models]

    def both(step: int) -> None:
        for i, (model, opt) in enumerate(zip(models, opts, strict=True)):
            opt.zero_grad(set_to_none=True)
            _forward(model, step)()[0].backward()
            if i == 0 or not fused_adam_step(opt):
                opt.step()
        _same(*opts, *models)

    for step in range(5):
        both(step)
    saved = copy.deepcopy((opts[1].state_dict(), [m.state_dict() for m in models]))
    for step in range(5, 9):
        both(step)
    for model, opt in zip(models, opts, strict=True):  # a restore: back to step 5
        model.load_state_dict(saved[1][0])
        opt.load_state_dict(copy.deepcopy(saved[0]))
    for step in range(5, 9):
        both(step)
    for model, opt in zip(models, opts, strict=True):  # a new group, without state yet
        opt.add_param_group({"params": list(model[2].parameters()) + list(model[3].parameters())})
    for step in range(9, 15):
        both(step)


def _stepped(opt: torch.optim.Optimizer, model: nn.Module) -> torch.optim.Optimizer:
    """``opt`` after one step of torch's (its state made) and a new gradient."""
    for step in range(2):
        opt.zero_grad(set_to_none=True)
        _forward(model, 0)()[0].backward()
        if step == 0:
            opt.step()
    return opt


def _adam(model: nn.Module, **settings: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), **{"lr": 1e-2, "fused": True, **settings})


class _MyAdam(torch.optim.Adam):
    pass


FALLBACKS: dict[str, Callable[[nn.Module], torch.optim.Optimizer]] = {
    "the for-loop step": lambda m: _adam(m, fused=False),
    "foreach": lambda m: _adam(m, fused=None, foreach=True),
    "a subclass": lambda m: _MyAdam(m.parameters(), lr=1e-2, fused=True),
    "a tensor lr": lambda m: _adam(m, lr=torch.tensor(1e-2)),
    "sgd": lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
    "lookahead": lambda m: Lookahead(_adam(m)),
    "sam": lambda m: SAM(_adam(m)),
}


@pytest.mark.parametrize("name", list(FALLBACKS))
def test_other_optimizers_take_their_own_step(name: str) -> None:
    model = _model()
    opt = FALLBACKS[name](model)
    if name == "sam":
        assert not fused_adam_step(opt)
        return
    assert not fused_adam_step(_stepped(opt, model))


def test_no_state_yet_takes_torchs_step() -> None:
    model = _model()
    opt = _adam(model)
    _forward(model, 0)()[0].backward()
    assert not fused_adam_step(opt)
    assert not opt.state


@pytest.mark.parametrize("where", ["pre", "post", "global pre", "global post"])
def test_step_hooks_are_called_through_torchs_step(where: str) -> None:
    model = _model()
    opt = _stepped(_adam(model), model)
    calls: list[str] = []
    register = {
        "pre": opt.register_step_pre_hook,
        "post": opt.register_step_post_hook,
        "global pre": torch_optimizer.register_optimizer_step_pre_hook,
        "global post": torch_optimizer.register_optimizer_step_post_hook,
    }[where]
    handle = register(lambda *_: calls.append(where))  # type: ignore[arg-type,return-value]
    try:
        assert not fused_adam_step(opt)
        OptimizerStep(opt, model.parameters())(_forward(model, 1))
        assert calls == [where]
    finally:
        handle.remove()
    assert fused_adam_step(opt)


def test_a_scaler_a_profiler_and_a_replaced_step_take_torchs_step() -> None:
    model = _model()
    opt = _stepped(_adam(model), model)
    opt.grad_scale = torch.ones(())  # type: ignore[attr-defined]  # as GradScaler.step sets
    assert not fused_adam_step(opt)
    del opt.grad_scale  # type: ignore[attr-defined]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]):
        assert not fused_adam_step(opt)
    own = opt.step
    opt.step = lambda *a, **k: own(*a, **k)  # type: ignore[method-assign]
    assert not fused_adam_step(opt)
    del opt.step
    assert fused_adam_step(opt)
    torch.optim.lr_scheduler.StepLR(opt, 2)  # marks its wrapper: still direct
    assert fused_adam_step(opt)


def test_a_group_of_two_dtypes_takes_torchs_step() -> None:
    model = _model()
    opt = _stepped(_adam(model), model)
    model[3].double()  # one group, two dtypes: torch splits the kernel
    for p in model[3].parameters():
        p.grad = torch.ones_like(p)
    assert not fused_adam_step(opt)


@pytest.mark.parametrize(
    "make", [lambda m: _adam(m), lambda m: torch.optim.SGD(m.parameters(), lr=0.1)]
)
def test_grads_to_none_clears_what_zero_grad_clears(
    make: Callable[[nn.Module], torch.optim.Optimizer],
) -> None:
    model = _model()
    opt = make(nn.Sequential(model[0], model[2]))  # model[3] is not the optimizer's
    _forward(model, 0)()[0].backward()
    grads_to_none(opt)
    assert [p.grad is None for p in model.parameters()] == [True] * 4 + [False] * 2


def test_an_own_zero_grad_is_called() -> None:
    model = _model()
    calls: list[bool] = []

    class Counting(torch.optim.SGD):
        def zero_grad(self, set_to_none: bool = True) -> None:
            calls.append(set_to_none)
            super().zero_grad(set_to_none)

    grads_to_none(Counting(model.parameters(), lr=0.1))
    opt = _adam(model)
    opt.zero_grad = lambda set_to_none=True: calls.append(set_to_none)  # type: ignore[method-assign]
    grads_to_none(opt)
    grads_to_none(Lookahead(Counting(model.parameters(), lr=0.1)))
    assert calls == [True, True, True]
