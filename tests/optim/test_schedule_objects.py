"""Schedule objects against torch's own schedulers driven by hand (the oracle), step by step."""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as tl

from skier.config import ScheduleConfig
from skier.errors import CheckpointError, ConfigError
from skier.optim.schedules import (
    Schedule,
    build_schedule,
    build_scheduler,
    lr_curve,
    resolve_interval,
)

EPOCHS, SPE, LR = 5, 7, 0.1
TOL = 1e-9


def _sgd(lr: float = LR, momentum: float = 0.0) -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=momentum)


def _drive(
    schedule: Schedule | None,
    opt: torch.optim.Optimizer,
    *,
    epochs: int = EPOCHS,
    spe: int = SPE,
    logs: Callable[[int], Mapping[str, float]] = lambda epoch: {},
) -> list[float]:
    """What the train loop does: the lr of every optimizer step."""
    lrs = []
    for epoch in range(1, epochs + 1):
        for _ in range(spe):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            if schedule is not None and schedule.interval == "step":
                schedule.step()
        if schedule is not None and schedule.interval == "epoch":
            schedule.step(logs(epoch))
    return lrs


def _ours(epochs: int = EPOCHS, spe: int = SPE, **cfg: Any) -> list[float]:
    opt = _sgd()
    schedule = build_schedule(opt, ScheduleConfig(**cfg), epochs=epochs, steps_per_epoch=spe)
    return _drive(schedule, opt, epochs=epochs, spe=spe)


def _oracle_per_epoch(make: Callable[[torch.optim.Optimizer], Any]) -> list[float]:
    opt = _sgd()
    sched = make(opt)
    lrs = []
    for _ in range(EPOCHS):
        lrs += [opt.param_groups[0]["lr"]] * SPE
        opt.step()
        sched.step()
    return lrs


def _oracle_per_step(make: Callable[[torch.optim.Optimizer], Any]) -> list[float]:
    opt = _sgd()
    sched = make(opt)
    lrs = []
    for _ in range(EPOCHS * SPE):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def _oracle_restarts_fractional(t0: int, mult: int, eta_min: float) -> list[float]:
    """torch's documented per-batch use: ``step(epoch + i / iters)``, the position of the next
    step (the docs' ``i / iters`` after step ``i`` lags by one step)."""
    opt = _sgd()
    sched = tl.CosineAnnealingWarmRestarts(opt, T_0=t0, T_mult=mult, eta_min=eta_min)
    lrs = []
    for epoch in range(EPOCHS):
        for i in range(SPE):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step(epoch + (i + 1) / SPE)
    return lrs


CASES: dict[str, tuple[dict[str, Any], Callable[[], list[float]]]] = {
    "constant": ({}, lambda: [LR] * EPOCHS * SPE),
    "step": (
        {"name": "step", "step_size": 2, "gamma": 0.5},
        lambda: _oracle_per_epoch(lambda o: tl.StepLR(o, step_size=2, gamma=0.5)),
    ),
    "step-default-gamma": (
        {"name": "step", "step_size": 1},
        lambda: _oracle_per_epoch(lambda o: tl.StepLR(o, step_size=1)),
    ),
    "multistep": (
        {"name": "multistep", "milestones": [1, 3], "gamma": 0.3},
        lambda: _oracle_per_epoch(lambda o: tl.MultiStepLR(o, [1, 3], gamma=0.3)),
    ),
    "exponential": (
        {"name": "exponential", "gamma": 0.7},
        lambda: _oracle_per_epoch(lambda o: tl.ExponentialLR(o, gamma=0.7)),
    ),
    "cosine": (
        {"name": "cosine", "min_lr": 0.01},
        lambda: _oracle_per_epoch(lambda o: tl.CosineAnnealingLR(o, T_max=EPOCHS, eta_min=0.01)),
    ),
    "cosine_restarts-step": (
        {"name": "cosine_restarts", "restart_epochs": 1, "restart_mult": 2, "min_lr": 0.001},
        lambda: _oracle_restarts_fractional(1, 2, 0.001),
    ),
    "cosine_restarts-epoch": (
        {"name": "cosine_restarts", "restart_epochs": 2, "restart_mult": 2, "interval": "epoch"},
        lambda: _oracle_per_epoch(lambda o: tl.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2)),
    ),
    "cyclical-triangular": (
        {
            "name": "cyclical",
            "base_lr": 0.01,
            "max_lr": 0.1,
            "step_size_up": 4,
            "step_size_down": 3,
        },
        lambda: _oracle_per_step(
            lambda o: tl.CyclicLR(
                o, 0.01, 0.1, step_size_up=4, step_size_down=3, cycle_momentum=False
            )
        ),
    ),
    "cyclical-triangular2": (
        {"name": "cyclical", "max_lr": 0.5, "step_size_up": 3, "cycle_mode": "triangular2"},
        lambda: _oracle_per_step(
            lambda o: tl.CyclicLR(
                o, LR, 0.5, step_size_up=3, mode="triangular2", cycle_momentum=False
            )
        ),
    ),
    "cyclical-exp_range": (
        {
            "name": "cyclical",
            "max_lr": 0.5,
            "step_size_up": 5,
            "cycle_mode": "exp_range",
            "gamma": 0.95,
        },
        lambda: _oracle_per_step(
            lambda o: tl.CyclicLR(
                o, LR, 0.5, step_size_up=5, mode="exp_range", gamma=0.95, cycle_momentum=False
            )
        ),
    ),
    "one_cycle": (
        {"name": "one_cycle", "max_lr": 0.4},
        lambda: _oracle_per_step(
            lambda o: tl.OneCycleLR(
                o, 0.4, epochs=EPOCHS, steps_per_epoch=SPE, cycle_momentum=False
            )
        ),
    ),
    "one_cycle-linear-three-phase": (
        {
            "name": "one_cycle",
            "pct_start": 0.25,
            "anneal_strategy": "linear",
            "three_phase": True,
            "div_factor": 10.0,
            "final_div_factor": 100.0,
        },
        lambda: _oracle_per_step(
            lambda o: tl.OneCycleLR(
                o,
                LR,
                total_steps=EPOCHS * SPE,
                pct_start=0.25,
                anneal_strategy="linear",
                three_phase=True,
                div_factor=10.0,
                final_div_factor=100.0,
                cycle_momentum=False,
            )
        ),
    ),
    "warmup-cosine": (
        {"name": "cosine", "warmup_epochs": 2},
        lambda: _oracle_per_epoch(
            lambda o: tl.SequentialLR(
                o, [tl.LinearLR(o, 1 / 3, total_iters=2), tl.CosineAnnealingLR(o, T_max=3)], [2]
            )
        ),
    ),
    "warmup-step-per-step": (
        {"name": "step", "step_size": 1, "gamma": 0.5, "warmup_epochs": 1, "interval": "step"},
        lambda: _oracle_per_step(
            lambda o: tl.SequentialLR(
                o,
                [tl.LinearLR(o, 1 / (SPE + 1), total_iters=SPE), tl.StepLR(o, SPE, gamma=0.5)],
                [SPE],
            )
        ),
    ),
    "cosine-per-step": (
        {"name": "cosine", "interval": "step"},
        lambda: _oracle_per_step(lambda o: tl.CosineAnnealingLR(o, T_max=EPOCHS * SPE)),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_step_equals_torch_driven_by_hand(case: str) -> None:
    cfg, oracle = CASES[case]
    ours, expected = _ours(**cfg), oracle()
    assert len(ours) == len(expected) == EPOCHS * SPE
    assert ours == pytest.approx(expected, rel=0, abs=TOL)


@pytest.mark.parametrize("case", list(CASES))
def test_lr_curve_equals_manual_stepping(case: str) -> None:
    cfg, _ = CASES[case]
    curve = lr_curve(ScheduleConfig(**cfg), lr=LR, epochs=EPOCHS, steps_per_epoch=SPE)
    assert curve.lrs == pytest.approx(_ours(**cfg), rel=0, abs=TOL)
    assert curve.steps == list(range(1, EPOCHS * SPE + 1))
    assert curve.epochs[: SPE + 1] == pytest.approx([i / SPE for i in range(SPE + 1)])
    assert curve.name == cfg.get("name", "constant")


def test_warmup_then_cosine_values() -> None:
    lrs = _ours(spe=1, epochs=6, name="cosine", warmup_epochs=2)
    assert lrs[:2] == pytest.approx([LR / 3, 2 * LR / 3])
    cosine = [LR * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)]
    assert lrs[2:] == pytest.approx(cosine, abs=TOL)


def test_interval_auto_and_forced() -> None:
    auto = {n: resolve_interval(ScheduleConfig(name=n, max_lr=1.0, milestones=[1])) for n in (
        "constant", "step", "multistep", "exponential", "cosine", "plateau",
        "cosine_restarts", "cyclical", "one_cycle",
    )}  # fmt: skip
    assert [n for n, i in auto.items() if i == "step"] == [
        "cosine_restarts", "cyclical", "one_cycle",
    ]  # fmt: skip
    assert resolve_interval(ScheduleConfig(name="cosine", interval="step")) == "step"
    assert resolve_interval(ScheduleConfig(name="one_cycle", interval="epoch")) == "epoch"


def test_per_step_keeps_the_epoch_timescale() -> None:
    """interval: step changes the lr within epochs; at epoch starts it equals per-epoch."""
    for cfg in (
        {"name": "cosine", "min_lr": 0.01},
        {"name": "exponential", "gamma": 0.5},
        {"name": "step", "step_size": 2, "gamma": 0.5},
        {"name": "multistep", "milestones": [2, 3]},
    ):
        per_epoch = _ours(**cfg, interval="epoch")
        per_step = _ours(**cfg, interval="step")
        starts = slice(0, None, SPE)
        assert per_step[starts] == pytest.approx(per_epoch[starts], abs=TOL), cfg
    smooth = _ours(name="cosine", interval="step")
    assert len(set(smooth[:SPE])) == SPE  # changes every step
    assert len(set(_ours(name="cosine")[:SPE])) == 1  # holds for the epoch


def test_one_cycle_per_epoch_is_torch_per_epoch() -> None:
    ours = _ours(name="one_cycle", interval="epoch")
    expected = _oracle_per_epoch(lambda o: tl.OneCycleLR(o, LR, total_steps=EPOCHS,
                                                         cycle_momentum=False))  # fmt: skip
    assert ours == pytest.approx(expected, abs=TOL)


def test_one_cycle_holds_past_its_end() -> None:
    opt = _sgd()
    schedule = build_schedule(opt, ScheduleConfig(name="one_cycle"), epochs=2, steps_per_epoch=3)
    assert schedule is not None
    lrs = _drive(schedule, opt, epochs=4, spe=3)  # resumed with more epochs than planned
    assert lrs[6:] == [lrs[6]] * 6


# --- reduce on plateau --------------------------------------------------------------------------

VAL = [1.0, 0.9, 0.95, None, 0.96, 0.97, 0.5, 0.6, 0.7, None, 0.8]


def _plateau_logs(epoch: int) -> dict[str, float]:
    value = VAL[epoch - 1]
    return {"loss": 1.0} if value is None else {"loss": 1.0, "val_loss": value}


def test_plateau_reacts_to_scripted_val_loss_and_ignores_missing_epochs() -> None:
    cfg = ScheduleConfig(name="plateau", patience=1, factor=0.5, threshold=0.0)
    opt = _sgd()
    schedule = build_schedule(opt, cfg, epochs=len(VAL), steps_per_epoch=1)
    assert schedule is not None and schedule.monitor == "val_loss"
    assert schedule.interval == "epoch"
    ours = _drive(schedule, opt, epochs=len(VAL), spe=1, logs=_plateau_logs)

    ref_opt = _sgd()
    ref = tl.ReduceLROnPlateau(ref_opt, patience=1, factor=0.5, threshold=0.0)
    expected = []
    for value in VAL:
        expected.append(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        if value is not None:  # the loop has no value: torch is not called at all
            ref.step(value)
    assert ours == pytest.approx(expected, abs=TOL)
    # by hand: best 0.9 at epoch 2; 0.95, 0.96 are two bad epochs (epoch 4 has no value);
    # e9 (0.7) the second bad epoch after the best 0.5; epoch 10 has no value and changes nothing
    assert ours == pytest.approx([0.1] * 5 + [0.05] * 4 + [0.025] * 2, abs=TOL)


def test_plateau_warmup_then_monitors() -> None:
    cfg = ScheduleConfig(name="plateau", warmup_epochs=2, patience=0, monitor="val_error")
    opt = _sgd()
    schedule = build_schedule(opt, cfg, epochs=6, steps_per_epoch=2)
    assert schedule is not None and schedule.monitor == "val_error"
    errors = [0.1, 0.1, 0.5, 0.5, 0.5, 0.5]  # flat during warm-up: ignored; then worse
    lrs = _drive(schedule, opt, epochs=6, spe=1, logs=lambda e: {"val_error": errors[e - 1]})
    assert lrs[:3] == pytest.approx([LR / 3, 2 * LR / 3, LR])
    assert lrs[3:] == pytest.approx([LR, LR * 0.1, LR * 0.01])


def test_plateau_min_mode_and_min_lr() -> None:
    cfg = ScheduleConfig(name="plateau", mode="max", monitor="val_accuracy", patience=0,
                         min_lr=0.03)  # fmt: skip
    opt = _sgd()
    schedule = build_schedule(opt, cfg, epochs=4, steps_per_epoch=1)
    lrs = _drive(schedule, opt, epochs=4, spe=1, logs=lambda e: {"val_accuracy": 0.5})
    assert lrs == pytest.approx([0.1, 0.1, 0.03, 0.03])


def test_plateau_curve_is_flat_and_says_so() -> None:
    curve = lr_curve(ScheduleConfig(name="plateau", warmup_epochs=1), lr=LR, epochs=3,
                     steps_per_epoch=2)  # fmt: skip
    assert curve.lrs == pytest.approx([LR / 2] * 2 + [LR] * 4)
    assert curve.warmup_end == 1.0
    assert any("flat" in n for n in curve.notes)


def test_curve_marks_restarts_and_warmup() -> None:
    cfg = ScheduleConfig(name="cosine_restarts", restart_epochs=2, restart_mult=2, warmup_epochs=1)
    curve = lr_curve(cfg, lr=LR, epochs=12, steps_per_epoch=3)
    assert curve.warmup_end == 1.0 and curve.restarts == [3.0, 7.0]
    for at in curve.restarts:  # the lr jumps back to its peak on each restart
        assert curve.lrs[int(at * 3)] == pytest.approx(LR)
    assert "over 36 steps" in curve.summary()


# --- momentum -----------------------------------------------------------------------------------


def test_cycle_momentum_only_when_the_optimizer_has_momentum() -> None:
    cfg = ScheduleConfig(name="cyclical", max_lr=1.0, step_size_up=2)
    plain = _sgd()
    _drive(build_schedule(plain, cfg, epochs=1, steps_per_epoch=4), plain, epochs=1, spe=4)
    assert plain.param_groups[0]["momentum"] == 0.0  # plain SGD stays plain SGD
    heavy = _sgd(momentum=0.9)
    schedule = build_schedule(heavy, cfg, epochs=1, steps_per_epoch=4)
    seen = []
    for _ in range(4):
        seen.append(heavy.param_groups[0]["momentum"])
        heavy.step()
        schedule.step()  # type: ignore[union-attr]
    assert seen == pytest.approx([0.9, 0.85, 0.8, 0.85])  # torch's 0.8..0.9, against the lr
    adam = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    build_schedule(adam, ScheduleConfig(name="one_cycle"), epochs=1, steps_per_epoch=4)
    assert adam.param_groups[0]["betas"] == (0.9, 0.999)  # beta1 left alone
    adam2 = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    forced = ScheduleConfig(name="one_cycle", cycle_momentum=True)
    build_schedule(adam2, forced, epochs=1, steps_per_epoch=4)
    assert adam2.param_groups[0]["betas"][0] == pytest.approx(0.95)  # torch's behaviour
    adagrad = torch.optim.Adagrad([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ConfigError, match=r"schedule\.cycle_momentum must be false or unset"):
        build_schedule(adagrad, forced, epochs=1, steps_per_epoch=4)


# --- resume -------------------------------------------------------------------------------------

RESUME = [
    {"name": "step", "step_size": 1, "gamma": 0.5, "warmup_epochs": 1},
    {"name": "multistep", "milestones": [2, 3], "interval": "step"},
    {"name": "exponential", "gamma": 0.8},
    {"name": "cosine", "warmup_epochs": 2, "interval": "step"},
    {"name": "cosine_restarts", "restart_epochs": 1, "restart_mult": 2, "warmup_epochs": 1},
    {"name": "cyclical", "max_lr": 0.5, "step_size_up": 3, "cycle_mode": "triangular2"},
    {"name": "cyclical", "max_lr": 0.5, "step_size_up": 4, "cycle_mode": "exp_range",
     "gamma": 0.9},
    {"name": "one_cycle", "three_phase": True},
    {"name": "plateau", "patience": 0, "cooldown": 1, "warmup_epochs": 1},
    {"constant": None, "warmup_epochs": 3},
]  # fmt: skip


def _roundtrip(obj: Any) -> Any:
    """Through torch.save / torch.load(weights_only=True), as a checkpoint goes."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("raw", RESUME, ids=lambda r: str(r.get("name", "constant")))
@pytest.mark.parametrize("stop_epoch", [1, 3])
def test_state_dict_round_trip_mid_schedule_continues_identically(
    raw: dict[str, Any], stop_epoch: int
) -> None:
    cfg = ScheduleConfig(**{k: v for k, v in raw.items() if k != "constant"})
    rising = lambda e: {"val_loss": float(e)}  # noqa: E731 - worse every epoch: plateau reacts
    momentum = 0.9
    full_opt = _sgd(momentum=momentum)
    full = build_schedule(full_opt, cfg, epochs=EPOCHS, steps_per_epoch=SPE)
    assert full is not None
    expected = _drive(full, full_opt, logs=rising)

    first_opt = _sgd(momentum=momentum)
    first = build_schedule(first_opt, cfg, epochs=EPOCHS, steps_per_epoch=SPE)
    assert first is not None
    before = _drive(first, first_opt, epochs=stop_epoch, logs=rising)
    saved = _roundtrip({"optimizer": first_opt.state_dict(), "schedule": first.state_dict()})

    opt = _sgd(momentum=momentum)
    resumed = build_schedule(opt, cfg, epochs=EPOCHS, steps_per_epoch=SPE)
    assert resumed is not None
    opt.load_state_dict(saved["optimizer"])  # the loop's order: optimizer, then schedule
    resumed.load_state_dict(saved["schedule"])
    after = []
    for epoch in range(stop_epoch + 1, EPOCHS + 1):
        for _ in range(SPE):
            after.append((opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]))
            opt.step()
            if resumed.interval == "step":
                resumed.step()
        if resumed.interval == "epoch":
            resumed.step(rising(epoch))
    assert before + [lr for lr, _ in after] == pytest.approx(expected, rel=0, abs=TOL)
    assert resumed.state_dict()["steps"] == full.state_dict()["steps"]
    assert opt.param_groups[0]["momentum"] == pytest.approx(full_opt.param_groups[0]["momentum"])


def test_load_state_dict_refuses_another_schedule() -> None:
    a = build_schedule(_sgd(), ScheduleConfig(name="cosine"), epochs=3, steps_per_epoch=2)
    b = build_schedule(_sgd(), ScheduleConfig(name="step"), epochs=3, steps_per_epoch=2)
    assert a is not None and b is not None
    with pytest.raises(CheckpointError, match=r"schedule must be the checkpoint's 'cosine'"):
        b.load_state_dict(a.state_dict())


def test_load_state_dict_takes_a_bare_torch_state() -> None:
    opt = _sgd()
    old = tl.StepLR(opt, step_size=1, gamma=0.5)
    opt.step()
    old.step()
    state = copy.deepcopy(old.state_dict())
    opt2 = _sgd()
    schedule = build_schedule(opt2, ScheduleConfig(name="step", step_size=1, gamma=0.5),
                              epochs=4, steps_per_epoch=1)  # fmt: skip
    assert schedule is not None
    opt2.load_state_dict(opt.state_dict())
    schedule.load_state_dict(state)
    opt2.step()
    schedule.step()
    assert schedule.lr == pytest.approx(0.025) and schedule.steps == 2


# --- errors and the old name ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [
        ({"name": "cosin"}, r"schedule\.name must be one of .*\(Did you mean 'cosine'\?\)"),
        ({"name": "onecycle"}, r"Did you mean 'one_cycle'\?"),
        ({"name": "one_cycle", "max_lr": 0}, r"schedule\.max_lr must be greater than 0; got 0"),
        ({"name": "one_cycle", "pct_start": 1.0}, r"schedule\.pct_start must be less than 1"),
        ({"name": "one_cycle", "pct_start": 0}, r"schedule\.pct_start must be greater than 0"),
        ({"name": "one_cycle", "warmup_epochs": 2}, r"warmup_epochs must be 0 .*'one_cycle'"),
        ({"name": "multistep", "milestones": [3, 3]}, r"milestones must be strictly increasing"),
        ({"name": "multistep"}, r"milestones must be a non-empty list"),
        ({"name": "cyclical"}, r"schedule\.max_lr must be set for schedule\.name 'cyclical'"),
        (
            {"name": "cyclical", "max_lr": 1.0, "cycle_mode": "triangle"},
            r"cycle_mode must be one of .*\(Did you mean 'triangular'\?\)",
        ),
        ({"name": "cyclical", "max_lr": 0.1, "base_lr": 0.2}, r"base_lr must be below"),
        ({"name": "cyclical", "max_lr": 1, "interval": "epoch"}, r"interval must be 'auto' or"),
        ({"name": "plateau", "interval": "step"}, r"interval must be 'auto' or 'epoch'"),
        ({"name": "plateau", "mode": "mx"}, r"schedule\.mode must be one of 'auto', 'min', 'max'"),
        ({"name": "plateau", "factor": 1.0}, r"schedule\.factor must be less than 1"),
        ({"name": "one_cycle", "anneal_strategy": "cosine"}, r"anneal_strategy must be one of"),
        ({"name": "step", "gamma": 0}, r"schedule\.gamma must be greater than 0"),
    ],
)
def test_config_errors(raw: dict[str, Any], pattern: str) -> None:
    from skier.config import config_from_mapping

    with pytest.raises(ConfigError, match=pattern):
        config_from_mapping({"schedule": raw})


def test_every_problem_is_reported_at_once() -> None:
    from skier.config import config_from_mapping

    raw = {"name": "cyclical", "cycle_mode": "tri", "interval": "epoch", "milestones": [2, 1]}
    with pytest.raises(ConfigError, match=r"^4 problems:") as info:
        config_from_mapping({"schedule": raw})
    for key in ("interval", "milestones", "max_lr", "cycle_mode"):
        assert f"schedule.{key}" in str(info.value)


def test_build_checks_against_the_optimizer_and_run() -> None:
    cfg = ScheduleConfig(name="cyclical", max_lr=0.05)  # below the optimizer's lr 0.1
    opt = _sgd()
    with pytest.raises(ConfigError, match=r"2 problems") as info:
        build_schedule(opt, cfg, epochs=0, steps_per_epoch=3)
    assert "epochs must be at least 1" in str(info.value)
    assert "schedule.max_lr must be above base_lr (0.1)" in str(info.value)
    assert opt.param_groups[0]["lr"] == LR and "initial_lr" not in opt.param_groups[0]


def test_build_rechecks_a_config_changed_field_by_field() -> None:
    cfg = ScheduleConfig()
    cfg.name = "multistep"  # the check across fields (milestones) ran before this change
    with pytest.raises(ConfigError, match=r"milestones must be a non-empty list"):
        build_schedule(_sgd(), cfg, epochs=3, steps_per_epoch=1)


def test_constant_without_warmup_is_none() -> None:
    assert build_schedule(_sgd(), ScheduleConfig(), epochs=3, steps_per_epoch=4) is None
    curve = lr_curve(ScheduleConfig(), lr=0.2, epochs=2, steps_per_epoch=3)
    assert curve.lrs == [0.2] * 6 and curve.warmup_end is None and curve.notes == []


def test_old_build_scheduler_still_works_for_epoch_schedules() -> None:
    opt = _sgd()
    sched = build_scheduler(opt, ScheduleConfig(name="step", step_size=1, gamma=0.5), epochs=3)
    assert isinstance(sched, tl.StepLR)
    with pytest.raises(ConfigError, match=r"Use skier\.optim\.build_schedule"):
        build_scheduler(_sgd(), ScheduleConfig(name="plateau"), epochs=3)
