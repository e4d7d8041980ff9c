"""Optimizers by name: a registry that later issues extend (rprop, rmsprop, lookahead, ...).

>>> import torch
>>> from skier.config import OptimConfig
>>> opt = build_optimizer(torch.nn.Linear(2, 1).parameters(), OptimConfig(name="sgd", lr=0.1))
>>> type(opt).__name__
'SGD'
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch

from skier.config import OptimConfig
from skier.errors import ConfigError, did_you_mean, problem

__all__ = ["OPTIMIZERS", "build_optimizer", "optimizer_names", "register_optimizer"]

Params = Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]]
Factory = Callable[[Params, OptimConfig], torch.optim.Optimizer]

OPTIMIZERS: dict[str, Factory] = {}


def register_optimizer(name: str) -> Callable[[Factory], Factory]:
    """Register ``factory(params, config) -> Optimizer`` under ``name``."""

    def decorate(factory: Factory) -> Factory:
        OPTIMIZERS[name] = factory
        return factory

    return decorate


def _torch_classes() -> dict[str, type[torch.optim.Optimizer]]:
    return {
        cls_name.lower(): cls
        for cls_name, cls in vars(torch.optim).items()
        if isinstance(cls, type)
        and issubclass(cls, torch.optim.Optimizer)
        and cls is not torch.optim.Optimizer
    }


def optimizer_names() -> list[str]:
    """Every name ``optim.name`` accepts: skier's registry plus torch.optim classes."""
    return sorted(set(OPTIMIZERS) | set(_torch_classes()))


@register_optimizer("sgd")
def _sgd(params: Params, c: OptimConfig) -> torch.optim.Optimizer:
    if c.nesterov and c.momentum == 0.0:
        raise ConfigError(
            problem("optim.momentum", "> 0 with nesterov", c.momentum, "Set optim.momentum: 0.9.")
        )
    return torch.optim.SGD(
        params,
        lr=c.lr,
        momentum=c.momentum,
        nesterov=c.nesterov,
        weight_decay=c.weight_decay,
        **c.extra,
    )


@register_optimizer("momentum")
def _momentum(params: Params, c: OptimConfig) -> torch.optim.Optimizer:
    # Heavy ball: plain SGD with momentum; 0.9 when the config leaves momentum at 0.
    m = c.momentum or 0.9
    return torch.optim.SGD(params, lr=c.lr, momentum=m, weight_decay=c.weight_decay, **c.extra)


@register_optimizer("nesterov")
def _nesterov(params: Params, c: OptimConfig) -> torch.optim.Optimizer:
    m = c.momentum or 0.9
    return torch.optim.SGD(
        params, lr=c.lr, momentum=m, nesterov=True, weight_decay=c.weight_decay, **c.extra
    )


@register_optimizer("adam")
def _adam(params: Params, c: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(
        params, lr=c.lr, betas=c.betas, eps=c.eps, weight_decay=c.weight_decay, **c.extra
    )


@register_optimizer("adamw")
def _adamw(params: Params, c: OptimConfig) -> torch.optim.Optimizer:
    # Decoupled weight decay (Loshchilov & Hutter); torch's own default is 0.01.
    wd = c.weight_decay if "weight_decay" in c.model_fields_set else 0.01
    return torch.optim.AdamW(params, lr=c.lr, betas=c.betas, eps=c.eps, weight_decay=wd, **c.extra)


def _generic(cls: type[torch.optim.Optimizer], params: Params, c: OptimConfig) -> Any:
    """Any other torch.optim class: pass the config fields its constructor accepts."""
    accepted = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = {"lr": c.lr}
    for key in ("momentum", "weight_decay", "betas", "eps", "nesterov"):
        if key in accepted and key in c.model_fields_set:
            kwargs[key] = getattr(c, key)
    unknown = [k for k in c.extra if k not in accepted]
    if unknown:
        valid = [k for k in accepted if k not in ("self", "params")]
        raise ConfigError(
            [
                f"optim.extra.{k} is not a parameter of torch.optim.{cls.__name__}."
                + (did_you_mean(k, valid) or f" Valid: {', '.join(valid)}.")
                for k in unknown
            ]
        )
    kwargs.update(c.extra)
    return cls(params, **kwargs)


def build_optimizer(params: Params, config: OptimConfig) -> torch.optim.Optimizer:
    """Build the optimizer ``config.name`` names over ``params``."""
    name = config.name.lower()
    if name in OPTIMIZERS:
        try:
            return OPTIMIZERS[name](params, config)
        except TypeError as exc:  # an unknown keyword in optim.extra
            raise ConfigError(f"optim.extra does not fit optimizer {name!r}: {exc}") from None
    classes = _torch_classes()
    if name in classes:
        return _generic(classes[name], params, config)
    raise ConfigError(
        problem(
            "optim.name",
            "a known optimizer",
            config.name,
            did_you_mean(name, optimizer_names()).strip(),  # problem() adds the space
        )
        + f" Known: {', '.join(optimizer_names())}."
    )
