"""Optimizers by name: the right torch class with the right hyper-parameters, and every setting
the chosen optimizer does not take reported as an error."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from skier.config import OptimConfig, config_from_mapping, config_to_yaml, load_config
from skier.errors import ConfigError
from skier.optim import (
    OPTIMIZERS,
    SETTINGS,
    Lookahead,
    build_optimizer,
    needs_closure,
    optimizer_names,
    register_optimizer,
)


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
            {"momentum": 0.8, "nesterov": True, "weight_decay": 0.0},
        ),
        ({"name": "momentum", "lr": 0.2}, torch.optim.SGD, {"momentum": 0.9, "nesterov": False}),
        ({"name": "momentum", "momentum": 0.5}, torch.optim.SGD, {"momentum": 0.5}),
        (
            {"name": "nesterov", "lr": 0.3, "weight_decay": 0.01},
            torch.optim.SGD,
            {"lr": 0.3, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
        ),
        (
            {"name": "rprop", "lr": 0.01, "etas": (0.4, 1.5), "step_sizes": (1e-5, 10.0)},
            torch.optim.Rprop,
            {"lr": 0.01, "etas": (0.4, 1.5), "step_sizes": (1e-5, 10.0)},
        ),
        ({"name": "RProp"}, torch.optim.Rprop, {"etas": (0.5, 1.2), "step_sizes": (1e-6, 50.0)}),
        (
            {"name": "rmsprop", "alpha": 0.9, "centered": True, "momentum": 0.5, "eps": 1e-6},
            torch.optim.RMSprop,
            {"alpha": 0.9, "centered": True, "momentum": 0.5, "eps": 1e-6, "weight_decay": 0.0},
        ),
        (
            {"name": "rmsprop"},
            torch.optim.RMSprop,
            {"alpha": 0.99, "centered": False, "momentum": 0.0, "eps": 1e-8},
        ),
        (
            {"name": "adam", "lr": 0.01, "betas": (0.8, 0.9), "eps": 1e-6},
            torch.optim.Adam,
            {"lr": 0.01, "betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 0.0, "amsgrad": False},
        ),
        ({"name": "adam", "amsgrad": True}, torch.optim.Adam, {"amsgrad": True, "eps": 1e-8}),
        ({"name": "adamw"}, torch.optim.AdamW, {"lr": 1e-3, "weight_decay": 0.01}),
        ({"name": "adamw", "weight_decay": 0.0}, torch.optim.AdamW, {"weight_decay": 0.0}),
        (
            {"name": "AdamW", "weight_decay": 0.2, "amsgrad": True},
            torch.optim.AdamW,
            {"weight_decay": 0.2, "amsgrad": True},
        ),
        (
            {"name": "adadelta", "lr": 1.0, "rho": 0.95},
            torch.optim.Adadelta,
            {"lr": 1.0, "rho": 0.95, "eps": 1e-6, "weight_decay": 0.0},
        ),
        (
            {"name": "adagrad", "lr_decay": 0.5, "initial_accumulator_value": 0.1},
            torch.optim.Adagrad,
            {"lr_decay": 0.5, "initial_accumulator_value": 0.1, "eps": 1e-10},
        ),
        (
            {"name": "lbfgs", "lr": 1.0, "max_iter": 5, "history_size": 10},
            torch.optim.LBFGS,
            {"lr": 1.0, "max_iter": 5, "history_size": 10, "line_search_fn": None},
        ),
        (
            {"name": "lbfgs", "line_search": "strong_wolfe"},
            torch.optim.LBFGS,
            {"max_iter": 20, "history_size": 100, "line_search_fn": "strong_wolfe"},
        ),
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
    opt = _build(name="adam", extra={"maximize": True})
    assert _group(opt)["maximize"] is True
    opt = _build(name="lbfgs", extra={"tolerance_grad": 1e-5})
    assert _group(opt)["tolerance_grad"] == 1e-5


@pytest.mark.parametrize(
    ("name", "cls"),
    [("nadam", torch.optim.NAdam), ("RAdam", torch.optim.RAdam), ("adamax", torch.optim.Adamax)],
)
def test_any_torch_optimizer_by_name(name: str, cls: type) -> None:
    assert type(_build(name=name, lr=0.05)) is cls
    assert _group(_build(name=name, lr=0.05))["lr"] == 0.05


def test_generic_optimizer_gets_the_fields_it_accepts_and_extra() -> None:
    opt = _build(
        name="nadam", lr=0.02, betas=(0.8, 0.9), weight_decay=0.1, extra={"momentum_decay": 0.01}
    )
    group = _group(opt)
    assert (group["lr"], group["betas"], group["weight_decay"], group["momentum_decay"]) == (
        0.02,
        (0.8, 0.9),
        0.1,
        0.01,
    )
    # a field left at its default is not passed: the class keeps its own default (ASGD: 0.75)
    assert _group(_build(name="asgd"))["alpha"] == 0.75
    assert _group(_build(name="asgd", alpha=0.5))["alpha"] == 0.5


def test_every_registered_name_builds_with_its_defaults() -> None:
    for name in OPTIMIZERS:
        assert isinstance(_build(name=name), torch.optim.Optimizer), name
        assert name in SETTINGS and "lr" in SETTINGS[name], name


def test_names_cover_registry_and_torch() -> None:
    names = optimizer_names()
    expected = {
        "sgd", "momentum", "nesterov", "rprop", "rmsprop", "adam", "adamw", "adadelta",
        "adagrad", "lbfgs", "nadam", "scratch_sgd", "scratch_momentum", "scratch_nesterov",
        "scratch_rprop", "scratch_rmsprop", "scratch_adam", "scratch_adamw",
    }  # fmt: skip
    assert expected <= set(names)
    assert names == sorted(names)
    assert "optimizer" not in names and "lookahead" not in names


# --- settings the optimizer does not take --------------------------------------------------------


def test_a_setting_the_optimizer_does_not_take_is_an_error() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^optim\.momentum is not a setting of optimizer 'adam'; got 0\.9\. "
        r"Settings of adam: lr, betas, eps, weight_decay, amsgrad\.$",
    ):
        _build(name="adam", momentum=0.9)


def test_every_such_setting_is_reported_at_once() -> None:
    with pytest.raises(ConfigError, match=r"^4 problems:") as info:
        _build(name="sgd", betas=(0.8, 0.9), rho=0.5, line_search="strong_wolfe", lookahead_k=3)
    problems = info.value.problems
    assert problems[0].startswith("optim.betas is not a setting of optimizer 'sgd'; got (0.8, 0.9)")
    assert problems[1].startswith("optim.rho is not a setting of optimizer 'sgd'; got 0.5")
    assert problems[2].startswith("optim.line_search is not a setting of optimizer 'sgd'")
    assert problems[0].endswith("Settings of sgd: lr, momentum, nesterov, weight_decay.")
    assert problems[3] == (
        "optim.lookahead_k is a setting of Lookahead, which is off; got 3. "
        "Set optim.lookahead: true."
    )


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"name": "rprop", "weight_decay": 0.01}, r"optim\.weight_decay is not a setting of "
         r"optimizer 'rprop'; got 0\.01\. Settings of rprop: lr, etas, step_sizes\."),
        ({"name": "rprop", "eps": 1e-8}, r"optim\.eps is not a setting of optimizer 'rprop'"),
        ({"name": "momentum", "nesterov": True}, r"optim\.nesterov is not a setting of "
         r"optimizer 'momentum'; got True\. Settings of momentum: lr, momentum, weight_decay\."),
        ({"name": "adagrad", "momentum": 0.5}, r"optim\.momentum is not a setting of "
         r"optimizer 'adagrad'; got 0\.5\."),
        ({"name": "adam", "centered": True}, r"optim\.centered is not a setting of optimizer"),
        ({"name": "adadelta", "alpha": 0.9}, r"optim\.alpha is not a setting of optimizer"),
        ({"name": "lbfgs", "weight_decay": 0.0}, r"optim\.weight_decay is not a setting of "
         r"optimizer 'lbfgs'; got 0\.0\. Settings of lbfgs: lr, max_iter, history_size, "
         r"line_search\."),
        ({"name": "scratch_rmsprop", "centered": True}, r"optim\.centered is not a setting of "
         r"optimizer 'scratch_rmsprop'; got True\. Settings of scratch_rmsprop: lr, alpha, eps, "
         r"weight_decay\."),
        ({"name": "scratch_adam", "amsgrad": True}, r"optim\.amsgrad is not a setting of "
         r"optimizer 'scratch_adam'"),
        ({"name": "nadam", "momentum": 0.9}, r"optim\.momentum is not a setting of optimizer "
         r"'nadam'; got 0\.9\. Settings of nadam: lr, weight_decay, betas, eps\."),
        ({"name": "asgd", "etas": (0.4, 1.1)}, r"optim\.etas is not a setting of optimizer "
         r"'asgd'; got \(0\.4, 1\.1\)\. Settings of asgd: lr, weight_decay, alpha\."),
        ({"name": "adam", "lookahead_alpha": 0.8}, r"optim\.lookahead_alpha is a setting of "
         r"Lookahead, which is off; got 0\.8\. Set optim\.lookahead: true\."),
        ({"name": "rmsprop", "extra": {"alpha": 0.9}}, r"optim\.extra\.alpha is a setting of "
         r"its own; got 0\.9\. Set optim\.alpha instead\."),
        ({"name": "lbfgs", "extra": {"line_search_fn": "strong_wolfe"}}, r"optim\.extra\."
         r"line_search_fn is a setting of its own; got 'strong_wolfe'\. Set optim\.line_search"),
        ({"name": "lookahead"}, r"optim\.name must be a known optimizer; got 'lookahead'\. "
         r"Lookahead wraps another optimizer: set optim\.lookahead: true\."),
    ],
)  # fmt: skip
def test_settings_the_optimizer_does_not_take(fields: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _build(**fields)


def test_a_setting_at_its_default_is_not_an_error() -> None:
    # A saved run config lists every field at its value: reading it back must build the same.
    opt = _build(name="adam", momentum=None, nesterov=False, alpha=0.99, etas=(0.5, 1.2))
    assert type(opt) is torch.optim.Adam


@pytest.mark.parametrize("name", ["adamw", "rprop", "adadelta", "lbfgs", "nesterov", "nadam"])
def test_a_saved_config_builds_the_same_optimizer(tmp_path: Any, name: str) -> None:
    config = config_from_mapping({"optim": {"name": name}})
    path = tmp_path / "config.yaml"
    path.write_text(config_to_yaml(config))
    again = load_config(path)
    assert again == config
    params = torch.nn.Linear(2, 1).parameters
    first = build_optimizer(params(), config.optim).param_groups[0]
    second = build_optimizer(params(), again.optim).param_groups[0]
    assert {k: v for k, v in first.items() if k != "params"} == {
        k: v for k, v in second.items() if k != "params"
    }


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


@pytest.mark.parametrize("name", ["momentum", "nesterov", "scratch_momentum", "scratch_nesterov"])
def test_momentum_methods_without_momentum(name: str) -> None:
    with pytest.raises(
        ConfigError,
        match=rf"optim\.momentum must be > 0 for optimizer '{name}'; got 0\.0\. Leave it out",
    ):
        _build(name=name, momentum=0.0)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "adamw", "rprop"])
def test_unknown_extra_key_for_a_registry_optimizer(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"optim.extra does not fit optimizer '{name}'.*bogus"):
        _build(name=name, extra={"bogus": 1})


def test_unknown_extra_key_for_a_torch_optimizer() -> None:
    with pytest.raises(ConfigError, match=r"2 problems") as info:
        _build(name="nadam", extra={"momentum_decai": 0.9, "zzz": 1})
    text = str(info.value)
    assert (
        "optim.extra.momentum_decai is not a parameter of torch.optim.NAdam. "
        "Did you mean 'momentum_decay'?" in text
    )
    assert "optim.extra.zzz is not a parameter of torch.optim.NAdam. Valid:" in text


def test_config_rejects_bad_hyper_parameters() -> None:
    for fields, match in [
        ({"lr": 0.0}, r"lr"),
        ({"momentum": 1.0}, r"momentum"),
        ({"alpha": 1.0}, r"alpha"),
        ({"rho": 1.5}, r"rho"),
        ({"etas": (1.2, 0.5)}, r"etas"),
        ({"step_sizes": (1.0, 0.1)}, r"step_sizes"),
        ({"max_iter": 0}, r"max_iter"),
        ({"line_search": "wolfe"}, r"line_search"),
        ({"lookahead_k": 0}, r"lookahead_k"),
        ({"lookahead_alpha": 0.0}, r"lookahead_alpha"),
    ]:
        with pytest.raises(ValueError, match=match):
            OptimConfig(**fields)


def test_config_errors_read_well() -> None:
    with pytest.raises(ConfigError, match=r"^2 problems:") as info:
        config_from_mapping({"optim": {"etas": [1.5, 1.2], "step_sizes": [1.0, 1e-3]}})
    assert info.value.problems == [
        "optim.etas must be (decrease, increase) with 0 < decrease < 1 < increase; got [1.5, 1.2].",
        "optim.step_sizes must be (min, max) with min <= max; got [1.0, 0.001].",
    ]


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


def test_register_optimizer_with_and_without_settings() -> None:
    @register_optimizer("test_plain_sgd", ["lr"])
    def _plain(params: Any, c: OptimConfig) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=c.lr)

    try:
        with pytest.raises(ConfigError, match=r"optim\.momentum is not a setting of optimizer"):
            _build(name="test_plain_sgd", momentum=0.5)
        register_optimizer("test_plain_sgd")(_plain)  # settings not declared: not checked
        assert type(_build(name="test_plain_sgd", momentum=0.5)) is torch.optim.SGD
    finally:
        OPTIMIZERS.pop("test_plain_sgd")
        SETTINGS.pop("test_plain_sgd", None)


# --- lookahead and L-BFGS ---------------------------------------------------------------------


def test_lookahead_from_the_config() -> None:
    opt = _build(name="rmsprop", lr=0.01, lookahead=True, lookahead_k=7, lookahead_alpha=0.3)
    assert isinstance(opt, Lookahead)
    assert type(opt.base_optimizer) is torch.optim.RMSprop
    assert (opt.k, opt.alpha, _group(opt)["lr"]) == (7, 0.3, 0.01)
    assert isinstance(_build(name="nadam", lookahead=True).base_optimizer, torch.optim.NAdam)


def test_needs_closure() -> None:
    assert needs_closure(_build(name="lbfgs"))
    assert needs_closure(_build(name="lbfgs", lookahead=True))
    assert not needs_closure(_build(name="adam", lookahead=True))
    assert not needs_closure(_build(name="sgd"))


@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
def test_lbfgs_minimizes_a_quadratic_with_a_closure(line_search: str | None) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 3, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.3
    model = torch.nn.Linear(3, 1).double()
    opt = build_optimizer(
        model.parameters(), OptimConfig(name="lbfgs", lr=1.0, line_search=line_search)
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (model(x).squeeze(1) - y).pow(2).mean()
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    assert closure().item() < 1e-10
    assert torch.allclose(model.bias, torch.tensor([0.3], dtype=torch.float64), atol=1e-5)
