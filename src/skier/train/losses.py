"""Losses: one registry, one entry per loss, and the checks a target must pass for it.

A loss is built from its name (``train.loss``) and its options (``train.label_smoothing``,
``train.class_weights``, ``train.pos_weight``, ``train.huber_delta``, ``train.smooth_l1_beta``),
or wraps any callable ``f(outputs, targets) -> scalar`` (``fit(loss=f)``, ``train.loss:
package.module:function``). Every built-in gives per-example values too (informative sampling
weights each example's loss); a callable gives them only if it takes ``reduction="none"``.

>>> loss = build_loss("huber", reduction="mean", options={"huber_delta": 0.5})
>>> float(loss(torch.tensor([[0.0], [2.0]]), torch.tensor([[0.0], [0.0]])))
0.4375
>>> sorted(LOSSES)[:3]
['binary_cross_entropy', 'cross_entropy', 'huber']

A new loss is one :class:`LossSpec` passed to :func:`register_loss`.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from skier._references import resolve_reference
from skier.errors import ConfigError, did_you_mean, problem

__all__ = [
    "LOSSES",
    "Loss",
    "LossFn",
    "LossSpec",
    "build_loss",
    "loss_for",
    "loss_task",
    "register_loss",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# What a loss's targets are: class indices, 0/1 labels (one or several per example), numbers.
Targets = Literal["classes", "binary", "real"]
# ``per_example(out, y, options) -> N``: each example's loss (the mean over its targets);
# ``reduced(out, y, options, reduction) -> scalar``: torch's own reduction, the training loss.
PerExample = Callable[[torch.Tensor, torch.Tensor, Mapping[str, Any]], torch.Tensor]
Reduced = Callable[[torch.Tensor, torch.Tensor, Mapping[str, Any], str], torch.Tensor]

#: The loss options (``train`` keys) and their defaults: a set option the loss does not read
#: is an error.
OPTION_DEFAULTS: dict[str, Any] = {
    "label_smoothing": 0.0,
    "class_weights": None,
    "pos_weight": None,
    "huber_delta": 1.0,
    "smooth_l1_beta": 1.0,
}


@dataclass(frozen=True)
class LossSpec:
    """One built-in loss: its name, what targets it takes, the options it reads, and its
    per-example and reduced forms."""

    name: str
    targets: Targets
    per_example: PerExample
    reduced: Reduced
    options: frozenset[str] = frozenset()
    description: str = ""


LOSSES: dict[str, LossSpec] = {}


def register_loss(spec: LossSpec) -> LossSpec:
    """Make ``spec`` available as ``train.loss: <spec.name>``."""
    LOSSES[spec.name] = spec
    return spec


def _tensor(value: Any, like: torch.Tensor) -> torch.Tensor | None:
    """An option's tensor on ``like``'s device, in its dtype (float64 outputs: float64)."""
    return None if value is None else _cached_tensor(value, like.device, like.dtype)


@functools.lru_cache(maxsize=64)
def _cached_tensor(
    value: float | tuple[float, ...], device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """An option's tensor (class weights, pos_weight), made once per device, not per batch."""
    return torch.as_tensor(value, dtype=dtype, device=device)


def _as_float(y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return y.to(out.dtype).reshape(out.shape)


# pad_few_classes: the columns it pads logits to, and the fewest rows it pads.
PAD_CLASSES = 16
PAD_MIN_ROWS = 512


def pad_few_classes(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``out``'s logits with columns of ``-inf`` up to 16 classes, where that makes an
    evaluation's cross-entropy faster: on the CPU, torch's log-softmax over fewer than 16
    classes takes a slow path (0.44 ms for 1,437 x 10 logits at one thread, 0.04 ms padded to
    16). The added classes have probability 0, so the losses are the same to float rounding
    (~1e-7 relative). Batches under 512 rows gain nothing and are returned as they are."""
    classes = out.shape[-1]
    if (
        out.device.type == "cpu"
        and out.dim() == 2
        and 2 < classes < PAD_CLASSES
        and out.shape[0] >= PAD_MIN_ROWS
        and y.dim() == 1
        and not y.is_floating_point()
    ):
        return F.pad(out, (0, PAD_CLASSES - classes), value=-math.inf)
    return out


def _mean_per_example(values: torch.Tensor) -> torch.Tensor:
    return values.reshape(values.shape[0], -1).mean(dim=1)


def _classes(
    functional: Callable[..., torch.Tensor], smoothing: bool
) -> tuple[PerExample, Reduced]:
    def kwargs(o: Mapping[str, Any], out: torch.Tensor) -> dict[str, Any]:
        extra = {"label_smoothing": o["label_smoothing"]} if smoothing else {}
        return {"weight": _tensor(o["class_weights"], out), **extra}

    def per_example(out: torch.Tensor, y: torch.Tensor, o: Mapping[str, Any]) -> torch.Tensor:
        return functional(out, y, reduction="none", **kwargs(o, out))

    def reduced(out: torch.Tensor, y: torch.Tensor, o: Mapping[str, Any], r: str) -> torch.Tensor:
        return functional(out, y, reduction=r, **kwargs(o, out))

    return per_example, reduced


def _elementwise(
    make: Callable[[torch.Tensor, torch.Tensor, Mapping[str, Any], str], torch.Tensor],
) -> tuple[PerExample, Reduced]:
    def per_example(out: torch.Tensor, y: torch.Tensor, o: Mapping[str, Any]) -> torch.Tensor:
        return _mean_per_example(make(out, _as_float(y, out), o, "none"))

    def reduced(out: torch.Tensor, y: torch.Tensor, o: Mapping[str, Any], r: str) -> torch.Tensor:
        return make(out, _as_float(y, out), o, r)

    return per_example, reduced


for _name, _fn, _smooth, _what in (
    ("cross_entropy", F.cross_entropy, True, "softmax cross-entropy on logits"),
    ("nll", F.nll_loss, False, "negative log-likelihood of log-probabilities"),
):
    _pe, _red = _classes(_fn, _smooth)
    register_loss(
        LossSpec(
            _name,
            "classes",
            _pe,
            _red,
            frozenset({"class_weights"} | ({"label_smoothing"} if _smooth else set())),
            _what,
        )
    )

_ELEMENTWISE: list[tuple[str, Targets, str, str, Callable[..., torch.Tensor]]] = [
    (
        "binary_cross_entropy",
        "binary",
        "pos_weight",
        "sigmoid + binary cross-entropy on logits",
        lambda out, y, o, r: F.binary_cross_entropy_with_logits(
            out, y, reduction=r, pos_weight=_tensor(o["pos_weight"], out)
        ),
    ),
    ("mse", "real", "", "mean squared error", lambda out, y, o, r: F.mse_loss(out, y, reduction=r)),
    ("l1", "real", "", "mean absolute error", lambda out, y, o, r: F.l1_loss(out, y, reduction=r)),
    (
        "huber",
        "real",
        "huber_delta",
        "Huber loss (quadratic within huber_delta)",
        lambda out, y, o, r: F.huber_loss(out, y, reduction=r, delta=o["huber_delta"]),
    ),
    (
        "smooth_l1",
        "real",
        "smooth_l1_beta",
        "smooth L1 (Huber / beta)",
        lambda out, y, o, r: F.smooth_l1_loss(out, y, reduction=r, beta=o["smooth_l1_beta"]),
    ),
]
for _name, _targets, _option, _what, _make in _ELEMENTWISE:
    _pe, _red = _elementwise(_make)
    register_loss(LossSpec(_name, _targets, _pe, _red, frozenset({_option} - {""}), _what))


def loss_task(loss: Any, target: torch.Tensor) -> str | None:
    """The task a named loss implies for these targets (``None``: a callable or ``auto``, so
    the data decides): binary cross-entropy on ``N x L`` labels is multi-label.

    >>> loss_task("mse", torch.zeros(3)), loss_task("binary_cross_entropy", torch.zeros(3, 2))
    ('regression', 'multilabel')
    """
    spec = LOSSES.get(loss) if isinstance(loss, str) else None
    if spec is None:
        return None
    if spec.targets == "binary":
        return "multilabel" if target.dim() == 2 and target.shape[1] > 1 else "classification"
    return "classification" if spec.targets == "classes" else "regression"


class Loss:
    """A built loss: ``loss(out, y)`` is the training loss (torch's reduction), ``per_example``
    each example's value (``None``: a callable that cannot give them), ``batch_sum`` what an
    evaluation pass adds up (the summed loss and the examples' total weight)."""

    def __init__(
        self,
        name: str,
        targets: Targets | None,
        reduced: LossFn,
        per_example: LossFn | None,
        *,
        class_weights: Any = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.name, self.targets = name, targets
        self._reduced, self.per_example = reduced, per_example
        self._class_weights = class_weights
        self.settings = dict(settings or {})  # the options it reads and its reduction
        # plain cross-entropy (no class weights, no smoothing) may pad its logits' columns
        self._pads = (
            name == "cross_entropy"
            and class_weights is None
            and not self.settings.get("label_smoothing")
        )

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._reduced(out, y)

    @property
    def pads(self) -> bool:
        """Whether :meth:`batch_sum` pads a few classes' logits (:func:`pad_few_classes`)."""
        return self._pads

    def __repr__(self) -> str:
        return f"Loss({self.name!r})"

    @property
    def stamp(self) -> str:
        """The loss with every setting that changes its values: two losses with one stamp
        measure the same thing (a stopped landscape resumes only onto its own loss).

        >>> build_loss("huber", options={"huber_delta": 0.5}).stamp
        "huber(huber_delta=0.5, reduction='mean')"
        """
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in sorted(self.settings.items()))})"

    def batch_sum(
        self, out: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The loss summed over a batch's examples, and their total weight (``None``: one
        each). Class weights make the mean a weighted one, as torch's ``reduction="mean"``."""
        if self.per_example is None:  # a callable: its mean times the examples
            mean = self._reduced(out, y)
            if mean.dim() != 0:
                raise ConfigError(
                    problem("train.loss", "a function that returns the batch's mean loss (a "
                            "scalar)", f"{self.name} returning shape {tuple(mean.shape)}")
                )  # fmt: skip
            return mean * y.shape[0], None
        if self._pads:  # evaluation only: training's loss keeps the plain kernel's bits
            out = pad_few_classes(out, y)
        values = self.per_example(out, y)
        if self.targets is None and values.shape != (y.shape[0],):  # a callable's own values
            raise ConfigError(
                problem("train.loss", "a function whose reduction='none' gives one value per "
                        f"example, shape ({y.shape[0]},)",
                        f"{self.name} returning shape {tuple(values.shape)}",
                        "Reduce over the other dimensions, or drop the reduction argument.")
            )  # fmt: skip
        return values.sum(), self.total_weight(y, out.dtype)

    def total_weight(
        self, y: torch.Tensor, dtype: torch.dtype = torch.float64
    ) -> torch.Tensor | None:
        """The examples' total class weight, the denominator of torch's weighted mean
        (``None``: no class weights, each example weighs one)."""
        if self._class_weights is None:
            return None
        weights = torch.as_tensor(self._class_weights, dtype=dtype, device=y.device)
        return weights[y].sum()

    def target_problems(self, splits: Mapping[str, Any], classes: int) -> list[str]:
        """:meth:`check_targets` of each named split's targets (``None``: no such split)."""
        return [
            line
            for name, split in splits.items()
            if split is not None
            for line in self.check_targets(split.targets, classes, f"{name} targets")
        ]

    def check_targets(self, y: torch.Tensor, output_size: int, field: str) -> list[str]:
        """Why targets ``y`` do not fit this loss (one line; empty: they do)."""
        if self.targets is None or len(y) == 0:
            return []
        got = f"targets of shape {tuple(y.shape)} {str(y.dtype).removeprefix('torch.')}"
        where = f"{field}: train.loss {self.name!r} needs"
        if self.targets == "classes":
            if y.is_floating_point() or y.dim() != 1:
                return [
                    f"{where} integer class labels of shape (N,); got {got}. "
                    "Use a regression loss (mse, l1, huber) for numbers."
                ]
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or (output_size and hi >= output_size):
                return [
                    f"{where} class labels in [0, {output_size}); got {got} with values "
                    f"{lo}..{hi}. Encode the labels as 0..C-1."
                ]
        elif self.targets == "binary":
            values = y.double()
            if y.dim() > 2 or bool(((values < 0) | (values > 1)).any()):
                return [
                    f"{where} 0/1 labels of shape (N,) (binary) or (N, L) (multi-label); "
                    f"got {got} with values in [{float(values.min()):g}, "
                    f"{float(values.max()):g}]."
                ]
        elif not y.is_floating_point():
            return [
                f"{where} float targets of shape (N,) or (N, t); got {got}. "
                "Use cross_entropy for class labels."
            ]
        return []


def _takes_reduction(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "reduction" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def build_loss(
    name: str | LossFn,
    *,
    reduction: str = "mean",
    options: Mapping[str, Any] | None = None,
    field: str = "train.loss",
) -> Loss:
    """The loss ``name`` (a registered name, ``package.module:function``, or a callable) with
    ``options`` (:data:`OPTION_DEFAULTS` keys; one it does not read is an error)."""
    opts = {**OPTION_DEFAULTS, **(options or {})}
    opts = {k: tuple(v) if isinstance(v, list) else v for k, v in opts.items()}  # hashable
    if callable(name) or (isinstance(name, str) and ":" in name):
        fn: Callable[..., torch.Tensor] = (
            resolve_reference(name, field, ConfigError, what="a function")
            if isinstance(name, str)
            else name
        )
        label = name if isinstance(name, str) else getattr(fn, "__name__", type(fn).__name__)
        _check_options(label, frozenset(), opts)
        per = (lambda out, y: fn(out, y, reduction="none")) if _takes_reduction(fn) else None
        if reduction == "mean":
            return Loss(label, None, fn, per, settings={"reduction": reduction})
        if per is None:
            raise ConfigError(
                problem(
                    "train.reduction",
                    f"'mean' for the loss {label!r} (a callable without a reduction argument)",
                    reduction,
                )
            )
        return Loss(
            label, None, lambda out, y: per(out, y).sum(), per, settings={"reduction": reduction}
        )
    spec = LOSSES.get(name)
    if spec is None:
        raise ConfigError(
            problem(
                field,
                f"one of {', '.join(sorted(LOSSES))}, auto, or 'package.module:function'",
                name,
                did_you_mean(name, list(LOSSES)),
            )
        )
    _check_options(name, spec.options, opts)
    return Loss(
        name,
        spec.targets,
        lambda out, y: spec.reduced(out, y, opts, reduction),
        lambda out, y: spec.per_example(out, y, opts),
        class_weights=opts["class_weights"] if "class_weights" in spec.options else None,
        settings={**{key: opts[key] for key in spec.options}, "reduction": reduction},
    )


def loss_for(train_config: Any, task: str) -> Loss:
    """The loss a run of ``task`` trains with, from its ``TrainConfig`` (``train.loss``, its
    options and reduction): the one builder the LR range test, the runner's diagnostics and
    curve training share.

    >>> from skier.config import TrainConfig
    >>> loss_for(TrainConfig(loss="huber", huber_delta=0.5), "regression")
    Loss('huber')
    """
    return resolve_loss(
        train_config.loss, task, reduction=train_config.reduction,
        options=loss_options(train_config),
    )  # fmt: skip


def _check_options(name: str, reads: frozenset[str], opts: Mapping[str, Any]) -> None:
    problems = [
        problem(
            f"train.{key}",
            f"{OPTION_DEFAULTS[key]!r} (unset) with train.loss {name!r}, which does not read it",
            opts[key],
        )
        for key in OPTION_DEFAULTS
        if key not in reads and opts[key] != OPTION_DEFAULTS[key]
    ]
    if problems:
        raise ConfigError(problems)


def loss_options(train_config: Any) -> dict[str, Any]:
    """The loss options a ``TrainConfig`` sets (:data:`OPTION_DEFAULTS` keys)."""
    return {key: getattr(train_config, key) for key in OPTION_DEFAULTS}


_FITS = {
    "classes": ("classification",),
    "binary": ("classification", "multilabel"),
    "real": ("regression",),
}
_AUTO = {
    "classification": "cross_entropy",
    "regression": "mse",
    "multilabel": "binary_cross_entropy",
}


def resolve_loss(
    loss: str | LossFn,
    task: str,
    *,
    reduction: str = "mean",
    options: Mapping[str, Any] | None = None,
) -> Loss:
    """The loss a run of ``task`` trains with: ``auto`` is cross-entropy, binary
    cross-entropy (multi-label) or MSE; a named loss must fit the task.

    >>> resolve_loss("auto", "multilabel").name
    'binary_cross_entropy'
    """
    name = _AUTO[task] if loss == "auto" else loss
    built = build_loss(name, reduction=reduction, options=options)
    if built.targets is not None and task not in _FITS[built.targets]:
        fits = [n for n, s in LOSSES.items() if task in _FITS[s.targets]]
        raise ConfigError(
            problem("train.loss", f"a loss for {task} ({', '.join(fits)}, auto)", built.name)
        )
    return built


def model_output_size(loss: Loss, task: str, data_output_size: int) -> int:
    """How many outputs the model needs: one logit for binary cross-entropy on two classes,
    else what the data says (classes, labels or targets)."""
    if task == "classification" and loss.targets == "binary":
        return 1
    return data_output_size
