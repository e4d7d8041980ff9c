"""Optimizers by name: skier's registry, then any other ``torch.optim`` class.

Each registered optimizer declares which ``OptimConfig`` settings it takes; a setting it does not
take, set to anything but its default, is an error rather than silently ignored. For any other
torch.optim class, its constructor's signature decides.

>>> import torch
>>> from skier.config import OptimConfig
>>> opt = build_optimizer(torch.nn.Linear(2, 1).parameters(), OptimConfig(name="sgd", lr=0.1))
>>> type(opt).__name__
'SGD'
>>> opt = build_optimizer(
...     torch.nn.Linear(2, 1).parameters(), OptimConfig(name="adam", lookahead=True)
... )
>>> type(opt).__name__, type(opt.base_optimizer).__name__
('Lookahead', 'Adam')
>>> opt = build_optimizer(torch.nn.Linear(2, 1).parameters(), OptimConfig(name="sgd", sam=0.05))
>>> type(opt).__name__, type(opt.base_optimizer).__name__, needs_closure(opt)
('SAM', 'SGD', True)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from skier.config import OptimConfig
from skier.errors import ConfigError, did_you_mean, problem
from skier.optim.lookahead import Lookahead
from skier.optim.sam import SAM
from skier.optim.scratch import SCRATCH

__all__ = [
    "OPTIMIZERS",
    "SETTINGS",
    "build_optimizer",
    "has_line_search",
    "needs_closure",
    "optimizer_names",
    "register_optimizer",
]

Params = Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]]
Factory = Callable[[Params, OptimConfig], torch.optim.Optimizer]

OPTIMIZERS: dict[str, Factory] = {}
# The OptimConfig fields each registered optimizer takes (absent: not checked).
SETTINGS: dict[str, tuple[str, ...]] = {}

# Settings of every optimizer: which one, Lookahead around it, and pass-through keywords.
_ANY_OPTIMIZER = (
    "name", "extra", "lookahead", "lookahead_k", "lookahead_alpha", "sam", "sam_adaptive",
)  # fmt: skip
_LOOKAHEAD = ("lookahead_k", "lookahead_alpha")
# A config field whose torch keyword has another name.
_KEYWORD = {"line_search": "line_search_fn"}


def register_optimizer(
    name: str, settings: Sequence[str] | None = None
) -> Callable[[Factory], Factory]:
    """Register ``factory(params, config) -> Optimizer`` under ``name``.

    ``settings`` are the ``OptimConfig`` fields the factory reads (``lr``, ``betas``, ...);
    with them, a config that sets any other field is refused. ``None`` skips that check.
    """

    def decorate(factory: Factory) -> Factory:
        OPTIMIZERS[name] = factory
        if settings is not None:
            SETTINGS[name] = tuple(settings)
        else:
            SETTINGS.pop(name, None)
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


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` needs a closure that recomputes the loss (L-BFGS and SAM do).

    >>> p = [torch.nn.Parameter(torch.zeros(1))]
    >>> needs_closure(torch.optim.LBFGS(p)), needs_closure(Lookahead(torch.optim.LBFGS(p)))
    (True, True)
    >>> needs_closure(torch.optim.SGD(p, lr=0.1))
    False
    """
    if isinstance(optimizer, Lookahead):
        return needs_closure(optimizer.base_optimizer)
    return isinstance(optimizer, torch.optim.LBFGS | SAM)


def has_line_search(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` decides on the loss its closure returns (L-BFGS's line
    search). A distributed rank's closure returns the loss of its own share, so such an
    optimizer cannot train data-parallel; SAM only reads the (all-reduced) gradients.

    >>> p = [torch.nn.Parameter(torch.zeros(1))]
    >>> has_line_search(torch.optim.LBFGS(p)), has_line_search(SAM(torch.optim.SGD(p, lr=0.1)))
    (True, False)
    """
    while isinstance(optimizer, Lookahead | SAM):
        optimizer = optimizer.base_optimizer
    return isinstance(optimizer, torch.optim.LBFGS)


def _changed(config: OptimConfig) -> list[str]:
    """The fields set explicitly to a value other than their default.

    A field written at its default changes nothing, and a saved run config lists every field
    (resuming reads it back), so only a changed value counts as "set".
    """
    return [
        name
        for name, info in OptimConfig.model_fields.items()
        if name in config.model_fields_set and getattr(config, name) != info.get_default()
    ]


def _not_taken(name: str, config: OptimConfig, takes: Sequence[str]) -> list[str]:
    """A problem for each field ``config`` sets that optimizer ``name`` does not take."""
    return [
        f"optim.{field} is not a setting of optimizer {name!r}; got {getattr(config, field)!r}. "
        f"Settings of {name}: {', '.join(takes)}."
        for field in _changed(config)
        if field not in takes and field not in _ANY_OPTIMIZER
    ]


def _wrapper_problems(config: OptimConfig) -> list[str]:
    problems = []
    if not config.lookahead:
        problems += [
            f"optim.{field} is a setting of Lookahead, which is off; "
            f"got {getattr(config, field)!r}. Set optim.lookahead: true."
            for field in _changed(config)
            if field in _LOOKAHEAD
        ]
    if config.sam is None and config.sam_adaptive:
        problems.append(
            "optim.sam_adaptive is a setting of SAM, which is off; got True. "
            "Set optim.sam to its radius rho, e.g. 0.05."
        )
    fields = set(OptimConfig.model_fields) | set(_KEYWORD.values())
    problems += [
        f"optim.extra.{key} is a setting of its own; got {config.extra[key]!r}. "
        f"Set optim.{_field_of(key)} instead."
        for key in config.extra
        if key in fields
    ]
    return problems


def _field_of(keyword: str) -> str:
    return next((f for f, k in _KEYWORD.items() if k == keyword), keyword)


def _checked(problems: list[str]) -> None:
    if problems:
        raise ConfigError(problems)


# --- skier's optimizers: the settings each takes, then how it is built ---------------------------

_SGD = ("lr", "momentum", "nesterov", "weight_decay")
_HEAVY_BALL = ("lr", "momentum", "weight_decay")
_ADAM = ("lr", "betas", "eps", "weight_decay", "amsgrad")


_WITH_MOMENTUM = ("momentum", "nesterov", "scratch_momentum", "scratch_nesterov")


def _value_problems(name: str, c: OptimConfig) -> list[str]:
    """Values that make no sense for this optimizer (found before anything is built)."""
    if name in _WITH_MOMENTUM and c.momentum == 0.0:
        # Heavy ball and Nesterov with no momentum would be plain gradient descent: say so.
        return [
            problem(
                "optim.momentum", f"> 0 for optimizer {name!r}", c.momentum,
                "Leave it out for 0.9, or use optim.name: sgd for plain gradient descent.",
            )
        ]  # fmt: skip
    if name == "sgd" and c.nesterov and not c.momentum:
        momentum = c.momentum or 0.0
        return [
            problem("optim.momentum", "> 0 with nesterov", momentum, "Set optim.momentum: 0.9.")
        ]
    return []


def _momentum_of(c: OptimConfig) -> float:
    return 0.9 if c.momentum is None else c.momentum  # heavy ball / Nesterov default


@register_optimizer("sgd", _SGD)
def _sgd(params: Params, c: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params,
        lr=_lr(c),
        momentum=c.momentum or 0.0,
        nesterov=c.nesterov,
        weight_decay=c.weight_decay or 0.0,
        **c.extra,
    )


@register_optimizer("momentum", _HEAVY_BALL)
def _momentum(params: Params, c: OptimConfig) -> torch.optim.Optimizer:
    # Heavy ball: SGD with momentum (0.9 unless the config says otherwise).
    m = _momentum_of(c)
    return torch.optim.SGD(
        params, lr=_lr(c), momentum=m, weight_decay=c.weight_decay or 0.0, **c.extra
    )


@register_optimizer("nesterov", _HEAVY_BALL)
def _nesterov(params: Params, c: OptimConfig) -> torch.optim.Optimizer:
    m = _momentum_of(c)
    return torch.optim.SGD(
        params, lr=_lr(c), momentum=m, nesterov=True, weight_decay=c.weight_decay or 0.0, **c.extra
    )


@register_optimizer("rprop", ("lr", "etas", "step_sizes"))
def _rprop(params: Params, c: OptimConfig) -> torch.optim.Optimizer:
    # Rprop has no weight decay and no eps: only the signs of the gradient matter.
    return torch.optim.Rprop(params, lr=_lr(c), etas=c.etas, step_sizes=c.step_sizes, **c.extra)


@register_optimizer("rmsprop", ("lr", "alpha", "eps", "weight_decay", "momentum", "centered"))
def _rmsprop(params: Params, c: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(
        params,
        lr=_lr(c),
        alpha=c.alpha,
        eps=c.eps if c.eps is not None else 1e-8,
        weight_decay=c.weight_decay or 0.0,
        momentum=c.momentum or 0.0,
        centered=c.centered,
        **c.extra,
    )


# optim.extra keywords that choose torch's implementation (or rule the fused one out).
_IMPLEMENTATION = ("fused", "foreach", "differentiable", "capturable")


def _fused(params: Params, c: OptimConfig) -> tuple[list[Any], dict[str, Any]]:
    """``params`` as a list, and ``fused=True`` where torch's fused step applies: every
    parameter a floating-point tensor on a device with fused kernels (CPU, CUDA, ...), and
    ``optim.extra`` choosing no implementation of its own. One kernel per parameter does the
    whole Adam update in place of about eight: measured faster at every workload of
    bench/suite.py (bench/RESULTS.md, 2026-12-07 fourth session). Its float rounding differs
    from the for-loop step's by an ulp or so a step (checked against it in the tests);
    reruns and resumes are bit-identical. ``optim.extra: {fused: false}`` gives the for-loop
    step (torch's CPU default) and its bits."""
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    given = list(params)
    tensors = [t for g in given for t in (g["params"] if isinstance(g, dict) else [g])]
    devices = _get_fused_kernels_supported_devices()
    usable = bool(tensors) and all(
        isinstance(t, torch.Tensor) and t.is_floating_point() and t.device.type in devices
        for t in tensors
    )
    chosen = any(k in c.extra for k in _IMPLEMENTATION)
    return given, {"fused": True} if usable and not chosen else {}


@register_optimizer("adam", _ADAM)
def _adam(params: Params, c: OptimConfig) -> torch.optim.Optimizer:
    params, fused = _fused(params, c)
    return torch.optim.Adam(
        params,
        lr=_lr(c),
        betas=c.betas,
        eps=c.eps if c.eps is not None else 1e-8,
        weight_decay=c.weight_decay or 0.0,
        amsgrad=c.amsgrad,
        **fused,
        **c.extra,
    )


@register_optimizer("adamw", _ADAM)
def _adamw(params: Params, c: OptimConfig) -> torch.optim.Optimizer:
    # Decoupled weight decay (Loshchilov & Hutter); torch's default decay is 0.01.
    params, fused = _fused(params, c)
    return torch.optim.AdamW(
        params,
        lr=_lr(c),
        betas=c.betas,
        eps=c.eps if c.eps is not None else 1e-8,
        weight_decay=c.weight_decay if c.weight_decay is not None else 0.01,
        amsgrad=c.amsgrad,
        **fused,
        **c.extra,
    )


@register_optimizer("adadelta", ("lr", "rho", "eps", "weight_decay"))
def _adadelta(params: Params, c: OptimConfig) -> torch.optim.Optimizer:
    # torch's lr for Adadelta is 1.0 (a scale on the update, which carries its own units).
    return torch.optim.Adadelta(
        params,
        lr=_lr(c),
        rho=c.rho,
        eps=c.eps if c.eps is not None else 1e-6,
        weight_decay=c.weight_decay or 0.0,
        **c.extra,
    )


@register_optimizer(
    "adagrad", ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")
)
def _adagrad(params: Params, c: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adagrad(
        params,
        lr=_lr(c),
        lr_decay=c.lr_decay,
        weight_decay=c.weight_decay or 0.0,
        initial_accumulator_value=c.initial_accumulator_value,
        eps=c.eps if c.eps is not None else 1e-10,
        **c.extra,
    )


@register_optimizer("lbfgs", ("lr", "max_iter", "history_size", "line_search"))
def _lbfgs(params: Params, c: OptimConfig) -> torch.optim.Optimizer:
    # step() needs a closure that recomputes the loss: see needs_closure.
    return torch.optim.LBFGS(
        params,
        lr=_lr(c),
        max_iter=c.max_iter,
        history_size=c.history_size,
        line_search_fn=c.line_search,
        **c.extra,
    )


def _scratch_factory(name: str, cls: type[torch.optim.Optimizer]) -> Factory:
    def factory(params: Params, c: OptimConfig) -> torch.optim.Optimizer:
        kwargs: dict[str, Any] = {"lr": _lr(c)}
        for field in _SCRATCH_SETTINGS[name][1:]:
            value = getattr(c, field)
            if value is not None:  # None: the class's own default (AdamW: decay 0.01)
                kwargs[field] = value
        if name in _WITH_MOMENTUM:
            kwargs["momentum"] = _momentum_of(c)
        return cls(params, **kwargs, **c.extra)

    return factory


_SCRATCH_SETTINGS = {
    "scratch_sgd": ("lr", "weight_decay"),
    "scratch_momentum": _HEAVY_BALL,
    "scratch_nesterov": _HEAVY_BALL,
    "scratch_rprop": ("lr", "etas", "step_sizes"),
    "scratch_rmsprop": ("lr", "alpha", "eps", "weight_decay"),
    "scratch_adam": ("lr", "betas", "eps", "weight_decay"),
    "scratch_adamw": ("lr", "betas", "eps", "weight_decay"),
}
for _name, _cls in SCRATCH.items():
    register_optimizer(_name, _SCRATCH_SETTINGS[_name])(_scratch_factory(_name, _cls))


# --- any other torch.optim class ------------------------------------------------------------------


def _generic_settings(cls: type[torch.optim.Optimizer]) -> tuple[str, ...]:
    accepted = inspect.signature(cls.__init__).parameters
    return tuple(f for f in OptimConfig.model_fields if _KEYWORD.get(f, f) in accepted)


def _generic_problems(name: str, cls: type[torch.optim.Optimizer], c: OptimConfig) -> list[str]:
    accepted = [
        k for k in inspect.signature(cls.__init__).parameters if k not in ("self", "params")
    ]
    problems = _not_taken(name, c, _generic_settings(cls))
    problems += [
        f"optim.extra.{k} is not a parameter of torch.optim.{cls.__name__}."
        + (did_you_mean(k, accepted) or f" Valid: {', '.join(accepted)}.")
        for k in c.extra
        if k not in accepted and k not in OptimConfig.model_fields  # those: _wrapper_problems
    ]
    return problems


def _generic(cls: type[torch.optim.Optimizer], params: Params, c: OptimConfig) -> Any:
    """Any other torch.optim class: lr, the fields the config changes, and extra."""
    kwargs: dict[str, Any] = {"lr": _lr(c)}
    takes = _generic_settings(cls)
    for field in _changed(c):
        if field in takes:
            kwargs[_KEYWORD.get(field, field)] = getattr(c, field)
    kwargs.update(c.extra)
    try:
        return cls(params, **kwargs)
    except TypeError as exc:  # e.g. a keyword this class does not take
        raise ConfigError(f"optim settings do not fit torch.optim.{cls.__name__}: {exc}") from None


def _lr(config: OptimConfig) -> float:
    if config.lr == "auto":
        raise ConfigError(
            "optim.lr must be a number to build the optimizer; got 'auto'. 'auto' is chosen by "
            "the LR range test before training: `skier train` and run_training() do that; in "
            "Python call skier.diagnostics.lr_range_test() and pass its .lr."
        )
    return float(config.lr)


def build_optimizer(params: Params, config: OptimConfig) -> torch.optim.Optimizer:
    """Build the optimizer ``config.name`` names over ``params`` (in Lookahead if asked).

    Raises :class:`ConfigError` listing every setting the optimizer does not take.
    """
    name = config.name.lower()
    _lr(config)  # 'auto' is resolved before an optimizer is built
    if config.sam is not None and name == "lbfgs":
        raise ConfigError(
            problem("optim.sam", "null with optim.name 'lbfgs'", config.sam,
                    "L-BFGS needs a closure of its own (a line search in each of SAM's two "
                    "passes): use SAM around a first-order optimizer (sgd, adam, ...).")
        )  # fmt: skip
    classes = _torch_classes()
    if name not in OPTIMIZERS and name not in classes:
        hint = did_you_mean(name, optimizer_names()).strip()  # problem() adds the space
        if name == "lookahead":
            hint = "Lookahead wraps another optimizer: set optim.lookahead: true."
        raise ConfigError(
            problem("optim.name", "a known optimizer", config.name, hint)
            + f" Known: {', '.join(optimizer_names())}."
        )
    if name in OPTIMIZERS:
        takes = SETTINGS.get(name)
        problems = _not_taken(name, config, takes) if takes is not None else []
        _checked(problems + _wrapper_problems(config) + _value_problems(name, config))
        try:
            optimizer = OPTIMIZERS[name](params, config)
        except TypeError as exc:  # an unknown keyword in optim.extra
            raise ConfigError(f"optim.extra does not fit optimizer {name!r}: {exc}") from None
    else:
        _checked(_generic_problems(name, classes[name], config) + _wrapper_problems(config))
        optimizer = _generic(classes[name], params, config)
    if config.sam is not None:
        optimizer = SAM(optimizer, rho=config.sam, adaptive=config.sam_adaptive)
    if config.lookahead:
        optimizer = Lookahead(optimizer, k=config.lookahead_k, alpha=config.lookahead_alpha)
    return optimizer
