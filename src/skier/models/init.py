"""Weight initialisation: a named scheme for weights, a rule for biases, pretrained tensors.

>>> from skier.config import InitConfig
>>> from skier.models import MLP
>>> model = MLP(64, 10, hidden_sizes=(32,))
>>> report = initialize(model, InitConfig(scheme="kaiming_normal"))
>>> report.weights, report.biases
(('blocks.0.linear.weight', 'head.weight'), ('blocks.0.linear.bias', 'head.bias'))

**Which tensors.** ``scheme`` sets the ``weight`` of every ``nn.Linear`` and ``nn.Conv*`` /
``nn.ConvTranspose*`` layer: the layers whose fan-in and fan-out the formulas are about. Their
``bias`` follows the ``bias`` rule (``auto``: ``zeros``, or ``default`` when the scheme is
``default``). Every other parameter — embeddings, normalization layers, anything a custom model
adds — keeps its own PyTorch init, for every scheme: one rule with no exceptions. (Zeroing the
hidden layers is enough to show the symmetry problem; zeroing an embedding or a batch-norm scale
would only break the layer in a different way.)

**Schemes** (all by :mod:`torch.nn.init`; ``fan_in`` is a weight's inputs per output and
``fan_out`` its outputs per input, both times the kernel size for a convolution):

- ``default``: each layer's own init, left bitwise unchanged (no random numbers drawn);
- ``uniform``: ``U(-a, a)``, variance ``a²/3``;
- ``normal``: ``N(0, std²)``, variance ``std²``;
- ``xavier_uniform``, ``xavier_normal`` (Glorot & Bengio 2010): variance
  ``gain² · 2 / (fan_in + fan_out)``;
- ``kaiming_uniform``, ``kaiming_normal`` (He et al. 2015): variance ``g² / fan`` with
  ``g = calculate_gain(nonlinearity)`` (``g² = 2`` for relu: variance ``2 / fan_in``) and
  ``fan`` the ``mode``, ``fan_in`` or ``fan_out``;
- ``orthogonal`` (Saxe et al. 2014): ``W Wᵀ = gain² I`` for a wide ``W`` (``Wᵀ W`` for a tall
  one; a convolution's weight counts as ``out_channels x (in_channels · kernel size)``);
- ``zeros`` and ``constant`` (``value``): every hidden unit of a layer starts the same, gets the
  same gradient and so stays the same — the symmetry problem these two exist to show.

**Custom schemes.** ``scheme: "package.module:function"`` imports the function and calls
``function(weight)`` on each weight the scheme covers, in order of ``model.named_modules()``,
inside ``torch.no_grad()``; it changes the tensor in place (its return value is ignored, so
``torch.nn.init`` functions fit). A function that names a ``name`` parameter also gets the
weight's dotted name, e.g. ``name="blocks.0.linear.weight"``::

    def scaled_normal(weight, *, name):
        torch.nn.init.normal_(weight, std=0.5 if name.startswith("head") else 0.05)

**Randomness** comes from the global torch RNG (``torch.manual_seed`` makes it reproducible;
the runner seeds it with ``train.seed`` before building the model), or from ``generator``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from skier._references import resolve_reference
from skier.config import InitConfig, config_from_mapping
from skier.errors import CheckpointError, ConfigError, problem

__all__ = ["INIT_LAYERS", "SCHEMES", "InitReport", "initialize"]

SCHEMES: tuple[str, ...] = InitConfig.schemes()
"""The built-in scheme names; ``package.module:function`` references are valid too."""

INIT_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
"""The layers whose ``weight`` the scheme sets and whose ``bias`` the bias rule sets."""

# skier's leaky_relu activation is nn.LeakyReLU() with its default slope.
_LEAKY_SLOPE = 0.01

# A rule sets one tensor in place, given its dotted name; what it returns is ignored.
TensorRule = Callable[[torch.Tensor, str], object]


@dataclass(frozen=True)
class InitReport:
    """What :func:`initialize` did to each tensor; ``to_dict()`` is JSON-safe.

    Every parameter is in exactly one of ``weights`` (set by the scheme), ``biases`` (set by the
    bias rule), ``kept`` (its layer's own init) and ``loaded`` (from the pretrained weights,
    which override the scheme). The pretrained lists are of state-dict keys, so they include
    buffers such as batch-norm running statistics: ``loaded``, ``skipped_shape_mismatch`` (a
    layer with a tensor of another shape, left to the scheme whole), ``not_in_checkpoint`` (left
    to the scheme) and ``unused_checkpoint_keys`` (in the checkpoint, not in the model).
    """

    scheme: str
    bias: str
    weights: tuple[str, ...] = ()
    biases: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    pretrained: str | None = None
    loaded: tuple[str, ...] = ()
    skipped_shape_mismatch: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=dict
    )
    """Name → (the model's shape, the checkpoint's shape) for every tensor of a layer with a
    tensor whose shape differs: such a layer is left to the scheme whole."""
    not_in_checkpoint: tuple[str, ...] = ()
    unused_checkpoint_keys: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, strings and numbers (what ``result.json`` stores under ``init``)."""
        return {
            "scheme": self.scheme,
            "bias": self.bias,
            "weights": list(self.weights),
            "biases": list(self.biases),
            "kept": list(self.kept),
            "pretrained": self.pretrained,
            "loaded": list(self.loaded),
            "skipped_shape_mismatch": {
                name: {"model": list(model), "checkpoint": list(saved)}
                for name, (model, saved) in self.skipped_shape_mismatch.items()
            },
            "not_in_checkpoint": list(self.not_in_checkpoint),
            "unused_checkpoint_keys": list(self.unused_checkpoint_keys),
        }


def initialize(
    model: nn.Module,
    config: InitConfig | Mapping[str, Any],
    *,
    pretrained: Mapping[str, torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> InitReport:
    """Initialise ``model`` in place as ``config`` says, then load ``pretrained`` tensors.

    ``config`` is an :class:`~skier.config.InitConfig` or a mapping of its settings.
    ``pretrained`` is a state dict (e.g. from :func:`skier.train.load_model_weights`): it is
    loaded over the scheme into each layer whose tensors it holds under the same names and
    shapes; a layer with a tensor of another shape (a new head) keeps the scheme whole, and the
    report lists what was loaded, skipped, missing and unused. It must fit at least one tensor.
    ``generator`` draws the random numbers instead of the global torch RNG (custom functions
    always use the global one).

    Everything is checked before the model is touched: a bad setting raises
    :class:`~skier.errors.ConfigError` listing every problem, unusable pretrained weights
    :class:`~skier.errors.CheckpointError`.

    >>> model = nn.Linear(4, 3)
    >>> report = initialize(model, {"scheme": "constant", "value": 0.5})
    >>> model.weight.unique().tolist(), model.bias.unique().tolist(), report.bias
    ([0.5], [0.0], 'zeros')
    """
    cfg = _validated(config)
    weight_rule = _weight_rule(cfg, generator)
    bias_name = _bias_rule_name(cfg)
    bias_rule = _bias_rule(cfg, bias_name, generator)
    plan = _plan_pretrained(model, pretrained) if pretrained is not None else None

    weights: list[str] = []
    biases: list[str] = []
    targets: dict[str, tuple[torch.Tensor, TensorRule]] = {}
    for prefix, module in model.named_modules():
        if not isinstance(module, INIT_LAYERS):
            continue
        for kind, rule, names in (("weight", weight_rule, weights), ("bias", bias_rule, biases)):
            tensor = getattr(module, kind, None)
            if rule is None or not isinstance(tensor, torch.Tensor) or _untouchable(tensor):
                continue
            name = f"{prefix}.{kind}" if prefix else kind
            if name not in targets:  # a layer reached twice (shared) is initialised once
                targets[name] = (tensor, rule)
                names.append(name)

    with torch.no_grad():
        for name, (tensor, rule) in targets.items():
            rule(tensor, name)
    if weight_rule is not None and cfg.scheme not in SCHEMES:
        _check_finite(model, weights, cfg.scheme)

    loaded: tuple[str, ...] = ()
    if plan is not None:
        model.load_state_dict(plan.tensors, strict=False)
        loaded = tuple(plan.tensors)
    done = set(loaded)
    return InitReport(
        scheme=cfg.scheme,
        bias=bias_name,
        weights=tuple(n for n in weights if n not in done),
        biases=tuple(n for n in biases if n not in done),
        kept=tuple(n for n, _ in model.named_parameters() if n not in done and n not in targets),
        pretrained="state dict" if plan is not None else None,
        loaded=loaded,
        skipped_shape_mismatch=plan.mismatched if plan is not None else {},
        not_in_checkpoint=plan.missing if plan is not None else (),
        unused_checkpoint_keys=plan.unused if plan is not None else (),
    )


# --- validation ---------------------------------------------------------------------------------


def _validated(config: InitConfig | Mapping[str, Any]) -> InitConfig:
    """Re-validate (a config made with ``model_construct`` skips pydantic's checks)."""
    if isinstance(config, InitConfig):
        data: dict[str, Any] = dict(config)
    elif isinstance(config, Mapping):
        data = dict(config)
    else:
        raise ConfigError(problem("init", "an InitConfig or a mapping of its settings", config))
    return config_from_mapping({"init": data}).init


def _untouchable(tensor: torch.Tensor) -> bool:
    # Lazy layers have no shape until their first forward; empty tensors have nothing to set
    # (and torch.nn.init warns about them).
    return nn.parameter.is_lazy(tensor) or tensor.numel() == 0


def _check_finite(model: nn.Module, names: list[str], scheme: str) -> None:
    params = dict(model.named_parameters())
    bad = [n for n in names if n in params and not bool(torch.isfinite(params[n]).all())]
    if bad:
        raise ConfigError(
            problem(
                "init.scheme",
                "a function that leaves finite weights",
                scheme,
                f"It left NaN or infinite values in {', '.join(bad)}.",
            )
        )


# --- rules --------------------------------------------------------------------------------------


def _weight_rule(cfg: InitConfig, gen: torch.Generator | None) -> TensorRule | None:
    init = nn.init
    scheme = cfg.scheme
    if scheme == "default":
        return None
    if scheme == "uniform":
        return lambda w, _name: init.uniform_(w, -cfg.a, cfg.a, generator=gen)
    if scheme == "normal":
        return lambda w, _name: init.normal_(w, 0.0, cfg.std, generator=gen)
    if scheme == "xavier_uniform":
        return lambda w, _name: init.xavier_uniform_(w, cfg.gain, generator=gen)
    if scheme == "xavier_normal":
        return lambda w, _name: init.xavier_normal_(w, cfg.gain, generator=gen)
    if scheme in ("kaiming_uniform", "kaiming_normal"):
        kaiming = init.kaiming_uniform_ if scheme == "kaiming_uniform" else init.kaiming_normal_
        slope = _LEAKY_SLOPE if cfg.nonlinearity == "leaky_relu" else 0.0
        return lambda w, _name: kaiming(w, slope, cfg.mode, cfg.nonlinearity, generator=gen)
    if scheme == "orthogonal":
        return lambda w, _name: init.orthogonal_(w, cfg.gain, generator=gen)
    if scheme == "zeros":
        return lambda w, _name: init.zeros_(w)
    if scheme == "constant":
        return lambda w, _name: init.constant_(w, cfg.value)
    return _custom_rule(scheme)


def _bias_rule_name(cfg: InitConfig) -> str:
    if cfg.bias != "auto":
        return cfg.bias
    return "default" if cfg.scheme == "default" else "zeros"


def _bias_rule(cfg: InitConfig, name: str, gen: torch.Generator | None) -> TensorRule | None:
    if name == "zeros":
        return lambda b, _name: nn.init.zeros_(b)
    if name == "constant":
        return lambda b, _name: nn.init.constant_(b, cfg.bias_value)
    if name == "normal":
        return lambda b, _name: nn.init.normal_(b, 0.0, cfg.bias_std, generator=gen)
    return None  # "default"


def _custom_rule(ref: str) -> TensorRule:
    function = _resolve(ref)
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):  # no signature (some builtins): the plain contract
        params = {}
    takes_name = "name" in params and params["name"].kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )

    def rule(weight: torch.Tensor, name: str) -> None:
        try:
            if takes_name:
                function(weight, name=name)
            else:
                function(weight)
        except Exception as exc:  # user code: report it against the setting that named it
            raise ConfigError(
                f"init.scheme {ref!r} raised {type(exc).__name__} on {name!r}: {exc}. "
                "It is called as function(weight) (plus name=... when it takes a name), "
                "and must change the weight in place."
            ) from exc

    return rule


def _resolve(ref: str) -> Callable[..., Any]:
    return resolve_reference(ref, "init.scheme", ConfigError, what="a function")


# --- pretrained weights -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    tensors: dict[str, torch.Tensor]
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]
    missing: tuple[str, ...]
    unused: tuple[str, ...]


def _plan_pretrained(model: nn.Module, weights: Mapping[str, torch.Tensor]) -> _Plan:
    """Match ``weights`` to the model's state dict by name and shape; change nothing."""
    if not isinstance(weights, Mapping):
        raise CheckpointError(
            problem("pretrained", "a mapping of names to tensors (a state dict)", type(weights))
        )
    not_tensors = [str(k) for k, v in weights.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            "pretrained must be a state dict of tensors; got other values at "
            f"{_some(dict.fromkeys(not_tensors))}."
        )
    own = model.state_dict()
    # A layer is loaded whole or not at all: a head with another width keeps its scheme for
    # the bias too, even where the bias's shape happens to match.
    clashing = {
        _layer(name)
        for name, target in own.items()
        if name in weights and weights[name].shape != target.shape
    }
    tensors: dict[str, torch.Tensor] = {}
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    missing: list[str] = []
    for name, target in own.items():
        saved = weights.get(name)
        if saved is None:
            missing.append(name)
        elif _layer(name) in clashing:
            mismatched[name] = (tuple(target.shape), tuple(saved.shape))
        else:
            tensors[name] = saved
    unused = tuple(k for k in weights if k not in own)
    if own and not tensors:
        # Nothing fits: a checkpoint of another model, or keys with a prefix ("module.").
        raise CheckpointError(
            "pretrained weights must share at least one tensor (same name and shape) with the "
            f"model; none of their {len(weights)} does. The model has {_some(own)}; the "
            f"checkpoint has {_some(weights)}."
        )
    return _Plan(tensors, mismatched, tuple(missing), unused)


def _layer(name: str) -> str:
    """The module that owns a state-dict entry: ``blocks.0.linear.weight`` → ``blocks.0.linear``."""
    return name.rpartition(".")[0]


def _some(names: Mapping[str, Any], shown: int = 4) -> str:
    keys = list(names)
    more = f", … ({len(keys) - shown} more)" if len(keys) > shown else ""
    return (", ".join(keys[:shown]) + more) if keys else "no tensors"
