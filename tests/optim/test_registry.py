"""Optimizers by name: the right torch class with the right hyper-parameters."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from skier.config import OptimConfig
from skier.errors import ConfigError
from skier.optim import build_optimizer, optimizer_names


def _build(**fields: Any) -> torch.optim.Optimizer:
    return build_optimizer(torch.nn.Linear(3, 2).parameters(), OptimConfig(**fields))


def _group(opt: torch.optim.Optimizer) -> dict[str, Any]:
    return opt.param_groups[0]


@pytest.mark.parametrize(
    ("fields", "cls", "expected"),
    [
        (
            {"name": "sgd", "lr": 0.1, "weight_decay": 1e-4},
            torch.optim.SGD,
            {"lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 1e-4},
        ),
        (
            {"name": "sgd", "lr": 0.1, "momentum": 0.8, "nesterov": True},
            torch.optim.SGD,
            {"momentum": 0.8, "nesterov": True},
        ),
        ({"name": "momentum", "lr": 0.2}, torch.optim.SGD, {"momentum": 0.9, "nesterov": False}),
        ({"name": "momentum", "momentum": 0.5}, torch.optim.SGD, {"momentum": 0.5}),
        (
            {"name": "nesterov", "lr": 0.3, "weight_decay": 0.01},
            torch.optim.SGD,
            {"lr": 0.3, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
        ),
        (
            {"name": "adam", "lr": 0.01, "betas": (0.8, 0.9), "eps": 1e-6},
            torch.optim.Adam,
            {"lr": 0.01, "betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 0.0},
        ),
        ({"name": "adamw"}, torch.optim.AdamW, {"lr": 1e-3, "weight_decay": 0.01}),
        ({"name": "adamw", "weight_decay": 0.0}, torch.optim.AdamW, {"weight_decay": 0.0}),
        ({"name": "AdamW", "weight_decay": 0.2}, torch.optim.AdamW, {"weight_decay": 0.2}),
    ],
)
def test_registry_names(fields: dict[str, Any], cls: type, expected: dict[str, Any]) -> None:
    opt = _build(**fields)
    assert type(opt) is cls
    group = _group(opt)
    for key, value in expected.items():
        assert group[key] == value, key


def test_registry_passes_extra() -> None:
    opt = _build(name="sgd", lr=0.1, momentum=0.9, extra={"dampening": 0.1})
    assert _group(opt)["dampening"] == 0.1
    opt = _build(name="adam", extra={"amsgrad": True})
    assert _group(opt)["amsgrad"] is True


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("rmsprop", torch.optim.RMSprop),
        ("adagrad", torch.optim.Adagrad),
        ("RProp", torch.optim.Rprop),
    ],
)
def test_any_torch_optimizer_by_name(name: str, cls: type) -> None:
    assert type(_build(name=name, lr=0.05)) is cls
    assert _group(_build(name=name, lr=0.05))["lr"] == 0.05


def test_generic_optimizer_gets_the_fields_it_accepts_and_extra() -> None:
    opt = _build(name="rmsprop", lr=0.02, momentum=0.7, weight_decay=0.1, extra={"alpha": 0.9})
    group = _group(opt)
    assert (group["lr"], group["momentum"], group["weight_decay"], group["alpha"]) == (
        0.02,
        0.7,
        0.1,
        0.9,
    )
    opt = _build(name="adagrad", extra={"lr_decay": 0.5, "initial_accumulator_value": 0.1})
    assert _group(opt)["lr_decay"] == 0.5
    assert _group(opt)["initial_accumulator_value"] == 0.1
    # Adagrad has no momentum: a momentum set in the config is not forced on it
    assert "momentum" not in _group(_build(name="adagrad", momentum=0.5))


def test_names_cover_registry_and_torch() -> None:
    names = optimizer_names()
    assert {"sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad"} <= set(names)
    assert names == sorted(names)
    assert "optimizer" not in names


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(
        ConfigError,
        match=r"optim.name must be a known optimizer; got 'rmsprob'\. "
        r"Did you mean 'rmsprop'\? Known: .*adam.*sgd",
    ):
        _build(name="rmsprob")


def test_unknown_name_without_a_close_match_lists_the_known() -> None:
    with pytest.raises(ConfigError, match=r"got 'zzzzzz'\. Known: adadelta"):
        _build(name="zzzzzz")


def test_nesterov_without_momentum() -> None:
    with pytest.raises(ConfigError, match=r"optim.momentum must be > 0 with nesterov; got 0.0"):
        _build(name="sgd", nesterov=True)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "adamw"])
def test_unknown_extra_key_for_a_registry_optimizer(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"optim.extra does not fit optimizer '{name}'.*bogus"):
        _build(name=name, extra={"bogus": 1})


def test_unknown_extra_key_for_a_torch_optimizer() -> None:
    with pytest.raises(ConfigError, match=r"2 problems") as info:
        _build(name="rmsprop", extra={"alpah": 0.9, "zzz": 1})
    text = str(info.value)
    assert (
        "optim.extra.alpah is not a parameter of torch.optim.RMSprop. Did you mean 'alpha'?" in text
    )
    assert "optim.extra.zzz is not a parameter of torch.optim.RMSprop. Valid:" in text


def test_config_rejects_bad_hyper_parameters() -> None:
    with pytest.raises(ValueError, match="lr"):
        OptimConfig(lr=0.0)
    with pytest.raises(ValueError, match="momentum"):
        OptimConfig(momentum=1.0)


def test_registry_optimizer_steps_like_torch() -> None:
    torch.manual_seed(0)
    a = torch.nn.Linear(3, 2)
    b = torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    ours = build_optimizer(a.parameters(), OptimConfig(name="nesterov", lr=0.1))
    theirs = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    x = torch.randn(8, 3)
    for _ in range(3):
        for model, opt in ((a, ours), (b, theirs)):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
