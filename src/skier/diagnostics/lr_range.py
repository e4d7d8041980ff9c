"""The LR range test (Smith 2017): train briefly while the lr grows, and watch the loss.

Starting from the caller's weights, the test takes ``num_steps`` optimizer steps on
mini-batches, each at a larger lr (a geometric or linear ramp from ``start_lr`` to ``end_lr``),
records the loss of every batch and stops once the loss blows up. The lr where the loss falls
fastest and most steadily is a good lr to train with. The model and optimizer are left exactly
as they were: the test is a measurement, not training.

>>> from skier.config import DataConfig, ModelConfig
>>> from skier.data import load_data
>>> from skier.models import build_model
>>> data = load_data(DataConfig(name="synthetic", samples=300, features=8, classes=3))
>>> model = build_model(ModelConfig(hidden_sizes=[16]), input_shape=data.input_shape,
...                     output_size=data.output_size)
>>> result = lr_range_test(model, data, settings={"num_steps": 30, "end_lr": 1.0})
>>> result.suggestion, len(result.lrs) <= 30
('valley', True)

The three rules for turning the curve into one lr (:func:`suggest_valley`,
:func:`suggest_steepest`, :func:`suggest_minimum`) read only ``(lrs, smoothed)``, so they can
be tried on any curve, recorded or made up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from skier._live import display_mode
from skier.config import LRFindConfig, OptimConfig, TrainConfig
from skier.config.base import as_section
from skier.data.types import DataBundle, Split
from skier.diagnostics._common import (
    choose_split,
    classification_of,
    model_device,
    preserved,
    trainable_parameters,
)
from skier.diagnostics._live_curve import LiveCurve
from skier.diagnostics._lr_batches import seeded_batches
from skier.errors import ConfigError, DataError, problem
from skier.models import check_output_shape
from skier.models.flat import training_forward
from skier.optim import build_optimizer, needs_closure
from skier.train.batches import resolve_batch_size, step_batch_size
from skier.train.callbacks.progress import progress_bar_class
from skier.train.losses import Loss, LossFn, loss_for, model_output_size
from skier.train.step import OptimizerStep

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "SUGGESTION_RULES",
    "LRRangeResult",
    "lr_ramp",
    "lr_range_test",
    "suggest_minimum",
    "suggest_steepest",
    "suggest_valley",
]

# A rule needs at least this many finite points before it says anything: with fewer, a
# "fall" or a "slope" is one or two noisy differences.
MIN_POINTS = 5
# valley: a rise smaller than this share of the whole fall is noise, not the end of a descent.
VALLEY_TOLERANCE = 0.02
# valley: the descent must make a new low (by more than the tolerance) within this share of
# the curve's points; a longer stall ends the stretch.
VALLEY_PATIENCE = 0.05
# valley: a curve whose loss falls by less than this share of where it started has not
# really fallen (a flat curve that wanders); there is no valley to speak of.
VALLEY_MIN_FALL = 0.01


@dataclass
class LRRangeResult:
    """What :func:`lr_range_test` measured: one entry per step actually taken.

    ``lrs[i]`` is the lr of step ``i``, ``losses[i]`` the loss of its mini-batch (computed
    before the step, so it shows what the steps so far did), ``smoothed[i]`` the bias-corrected
    moving average of the losses up to ``i``. ``diverged`` says the test stopped early because
    the smoothed loss passed ``divergence_factor`` × ``best_loss`` or a loss was not finite;
    ``stop_step`` is that step's index (``None`` when every step ran).

    >>> result.lr        # doctest: +SKIP
    0.0021
    >>> result.to_dict()["suggestions"]   # doctest: +SKIP
    {'valley': 0.0021, 'steepest': 0.0008, 'minimum': 0.0063}
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestions: dict[str, float | None]
    suggestion: str
    lr: float | None
    diverged: bool
    stop_step: int | None
    best_loss: float
    settings: LRFindConfig
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (NaN and infinities become ``None``), e.g. for ``result.json``."""
        return {
            "lrs": [_json_float(v) for v in self.lrs],
            "losses": [_json_float(v) for v in self.losses],
            "smoothed": [_json_float(v) for v in self.smoothed],
            "suggestions": {k: _json_float(v) for k, v in self.suggestions.items()},
            "suggestion": self.suggestion,
            "lr": _json_float(self.lr),
            "diverged": self.diverged,
            "stop_step": self.stop_step,
            "steps": len(self.lrs),
            "best_loss": _json_float(self.best_loss),
            "settings": self.settings.model_dump(mode="json"),
            "seconds": self.seconds,
            "notes": list(self.notes),
        }

    def plot(self, ax: Axes | None = None, **options: Any) -> Axes:
        """Draw the curve (:func:`skier.plots.plot_lr_range`); a notebook shows it as it is.

        >>> result.plot(show_raw=False)   # doctest: +SKIP
        """
        from skier.plots.lr_range import plot_lr_range  # matplotlib only when drawing

        return plot_lr_range(self, ax, **options)


def _json_float(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


# --- the ramp and the smoothing ------------------------------------------------------------


def lr_ramp(settings: LRFindConfig) -> list[float]:
    """The lr of each of the ``num_steps`` steps, ``start_lr`` first and ``end_lr`` last.

    >>> lr_ramp(LRFindConfig(start_lr=1e-3, end_lr=1e-1, num_steps=5))
    [0.001, 0.0031622776601683794, 0.01, 0.03162277660168379, 0.1]
    """
    n, start, end = settings.num_steps, settings.start_lr, settings.end_lr
    if settings.mode == "linear":
        return [start + (end - start) * i / (n - 1) for i in range(n)]
    return [start * (end / start) ** (i / (n - 1)) for i in range(n)]


class _Smoother:
    """Bias-corrected exponential moving average: without the correction the first values
    would be pulled towards 0 and look like a fall."""

    def __init__(self, beta: float) -> None:
        self.beta = beta
        self.average = 0.0
        self.count = 0

    def add(self, value: float) -> float:
        self.average = self.beta * self.average + (1.0 - self.beta) * value
        self.count += 1
        return self.average / (1.0 - self.beta**self.count)


# --- the suggestion rules ------------------------------------------------------------------


def _finite_prefix(lrs: Sequence[float], smoothed: Sequence[float]) -> tuple[Any, Any]:
    """The curve up to its first non-finite point, as float arrays."""
    x = np.asarray(lrs, dtype=float)
    y = np.asarray(smoothed, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"lrs and smoothed must be 1-D and of the same length; got {len(x)} and {len(y)}."
        )
    bad = ~(np.isfinite(x) & np.isfinite(y))
    end = int(np.argmax(bad)) if bad.any() else len(y)
    return x[:end], y[:end]


def _up_to_minimum(lrs: Sequence[float], smoothed: Sequence[float]) -> tuple[Any, Any] | None:
    """The finite curve up to (and with) its lowest point; None when it is too short."""
    x, y = _finite_prefix(lrs, smoothed)
    if len(y) < MIN_POINTS:
        return None
    low = int(np.argmin(y))
    return x[: low + 1], y[: low + 1]


def suggest_minimum(lrs: Sequence[float], smoothed: Sequence[float]) -> float | None:
    """The lr at the lowest smoothed loss, divided by 10.

    At the minimum the lr is already at the edge of what training stands, so one tenth of it
    is the usual safe choice. None for a curve with fewer than 5 finite points.

    >>> suggest_minimum([1e-3, 1e-2, 1e-1, 1.0, 10.0], [2.0, 1.5, 0.5, 0.9, 3.0])
    0.01
    """
    x, y = _finite_prefix(lrs, smoothed)
    if len(y) < MIN_POINTS:
        return None
    return float(x[int(np.argmin(y))] / 10.0)


def suggest_steepest(lrs: Sequence[float], smoothed: Sequence[float]) -> float | None:
    """The lr where the smoothed loss falls fastest against log10(lr).

    Slopes are central differences of the loss over ``log10(lr)``, up to the curve's minimum
    (past it the loss climbs). This rule is fragile: a single bump in the curve (a noisy
    batch on small data, where even the smoothed loss jumps) has a steep side that can win
    over the real descent, so it is not the default. None when the curve has fewer than 5
    finite points or never falls.

    >>> lrs = [10.0**e for e in range(-5, 1)]
    >>> suggest_steepest(lrs, [2.0, 2.0, 1.2, 0.6, 0.5, 3.0])
    0.001
    """
    curve = _up_to_minimum(lrs, smoothed)
    if curve is None:
        return None
    x, y = curve
    if len(y) < 3 or np.any(x <= 0):
        return None
    log_lr = np.log10(x)
    slopes = (y[2:] - y[:-2]) / (log_lr[2:] - log_lr[:-2])
    best = int(np.argmin(slopes))
    if not slopes[best] < 0.0:
        return None
    return float(x[best + 1])


def _falling_stretches(y: Any, tolerance: float, patience: int) -> list[tuple[int, int]]:
    """``(first, last)`` index of each stretch where ``y`` keeps making new lows.

    ``low[i]`` is the lowest value up to ``i``, so a bump (noise) does not move it. The
    window starting at ``k`` is "falling" when ``low`` drops by more than ``tolerance`` within
    the next ``patience`` points; a run of falling windows is one descent. A flat or wandering
    stretch never drops by the tolerance, so it is not falling; a bump inside a descent that
    the loss recovers from within the window does not stop it.

    The descent is then cut to where the loss really moves, the same way at both ends so
    that its middle is not pulled to one side: it starts at the last point still within the
    tolerance of the level it falls from and ends at the first point within the tolerance
    of the lowest level it reaches.
    """
    low = np.minimum.accumulate(y)
    last = len(y) - 1
    falling = [low[min(k + patience, last)] < low[k] - tolerance for k in range(last)]
    stretches: list[tuple[int, int]] = []
    k = 0
    while k < last:
        if not falling[k]:
            k += 1
            continue
        top = k
        while k < last and falling[k]:
            k += 1
        bottom = min(k - 1 + patience, last)
        # falling[top] guarantees a point below low[top] - tolerance within the window.
        left = top + int(np.argmax(y[top : bottom + 1] < low[top] - tolerance)) - 1
        right = top + int(np.argmax(low[top : bottom + 1] <= low[bottom] + tolerance))
        stretches.append((max(left, top), max(right, left)))
    return stretches


def suggest_valley(lrs: Sequence[float], smoothed: Sequence[float]) -> float | None:
    """The lr in the middle of the longest stretch where the smoothed loss keeps falling.

    Only the curve up to its minimum counts (after it, the loss is on its way up). "Keeps
    falling" is defined so that noise neither makes nor breaks a stretch: the lowest loss so
    far must drop by more than 2 % of the whole fall (the first loss minus the minimum)
    within every window of 5 % of the points (at least 2). A flat start that wanders by
    less than that is not a descent; a bump that the loss recovers from within the window
    does not end one. The stretch runs from the last point at the level the loss falls from
    to the first point at the level it reaches (both within that 2 %), and its middle is
    taken in steps, which on an exponential ramp is the geometric middle of its lrs. Ties go
    to the stretch with the larger fall. None when the curve has fewer than 5 finite points
    or never falls by more than 1 % of its first loss.

    The middle of a steady descent is far from both the lrs too small to move the loss and
    the ones where it is about to blow up, which makes this the robust default.

    >>> lrs = [10.0 ** (-6 + i / 10) for i in range(60)]   # 1e-6 ... 0.8
    >>> flat, fall = [2.0] * 20, [2.0 - 0.08 * k for k in range(1, 23)]
    >>> rise = [0.24 * 1.5**k for k in range(1, 19)]
    >>> round(suggest_valley(lrs, flat + fall + rise), 9)  # steps 19 to 41: the middle is 30
    0.001
    """
    curve = _up_to_minimum(lrs, smoothed)
    if curve is None:
        return None
    x, y = curve
    # Measured from the first point, not the highest: one spike must not widen the tolerance.
    fall = float(y[0] - y[-1])
    if len(y) < 2 or not fall > VALLEY_MIN_FALL * abs(float(y[0])):
        return None
    _, whole = _finite_prefix(lrs, smoothed)
    patience = max(2, round(VALLEY_PATIENCE * len(whole)))
    stretches = _falling_stretches(y, VALLEY_TOLERANCE * fall, patience)
    if not stretches:
        return None
    first, last = max(stretches, key=lambda s: (s[1] - s[0], y[s[0]] - y[s[1]]))
    return float(x[(first + last) // 2])


SUGGESTION_RULES = {
    "valley": suggest_valley,
    "steepest": suggest_steepest,
    "minimum": suggest_minimum,
}


# --- validation: everything is checked before the model is touched -------------------------


def _resolve_optimizer(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    optim_config: OptimConfig | Mapping[str, Any] | None,
    start_lr: float,
) -> torch.optim.Optimizer:
    if optimizer is not None and optim_config is not None:
        raise ConfigError(
            problem(
                "optim_config", "None when an optimizer is given", "OptimConfig",
                "Pass either the optimizer to test or the settings to build one from.",
            )
        )  # fmt: skip
    if optimizer is None:
        config = as_section(OptimConfig, optim_config, "optim.")
        if config.lr == "auto":  # what this test is for; the ramp sets the lr of every step
            config = config.model_copy(update={"lr": start_lr})
        field_name, shown = "optim.name", config.name
        optimizer = build_optimizer(model.parameters(), config)
    else:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError(
                problem("optimizer", "a torch.optim.Optimizer", type(optimizer).__name__)
            )
        field_name, shown = "optimizer", type(optimizer).__name__
    if needs_closure(optimizer):
        raise ConfigError(
            problem(
                field_name, "an optimizer whose step needs no closure", shown,
                "L-BFGS searches its own step size, so an lr ramp says nothing about it, and "
                "SAM (optim.sam) would need two passes a step; run the test with e.g. 'adam' "
                "or 'sgd' (without optim.sam).",
            )
        )  # fmt: skip
    owned = {id(p) for p in model.parameters()}
    foreign = [p for g in optimizer.param_groups for p in g["params"] if id(p) not in owned]
    if foreign:
        raise ConfigError(
            problem(
                "optimizer", "an optimizer over the model's own parameters",
                f"{len(foreign)} parameters that are not the model's",
                "Build it with model.parameters(): only the model is restored afterwards.",
            )
        )  # fmt: skip
    return optimizer


def _check_data(
    model: torch.nn.Module, data: Any, split: Split, classification: bool, loss: Loss
) -> None:
    """The same checks ``fit`` makes: examples present, targets fit the task, output shape (one
    logit for binary cross-entropy on two classes, as ``fit`` builds it)."""
    if len(split) == 0:
        raise DataError("data must hold at least one example; got 0.")
    if classification and split.targets.is_floating_point():
        raise DataError(
            problem(
                "data.targets", "class indices (integers) for classification",
                str(split.targets.dtype), "Use task='regression' for float targets.",
            )
        )  # fmt: skip
    if isinstance(data, DataBundle):
        output_size = data.output_size
        cardinalities: Sequence[int] = data.categorical_cardinalities
    else:
        targets = split.targets
        if classification:
            output_size = int(targets.max()) + 1
        else:
            output_size = int(targets.shape[1]) if targets.dim() > 1 else 1
        codes = [t for t in split.inputs if not t.is_floating_point()]
        cardinalities = (codes[0].max(dim=0).values + 1).tolist() if codes else ()
    shapes = [tuple(t.shape[1:]) for t in split.inputs if t.is_floating_point()]
    task = "classification" if classification else "regression"
    output_size = model_output_size(loss, task, output_size)
    check_output_shape(model, shapes, output_size, categorical_cardinalities=cardinalities)


# --- the test ------------------------------------------------------------------------------


def _progress_bar(enabled: bool, total: int) -> Any:
    if not enabled:
        return None
    tqdm = progress_bar_class()

    return tqdm(total=total, desc="lr range test", unit="step", leave=False)


def lr_range_test(
    model: torch.nn.Module,
    data: DataBundle | Split | tuple[Any, Any],
    *,
    optimizer: torch.optim.Optimizer | None = None,
    optim_config: OptimConfig | Mapping[str, Any] | None = None,
    train_config: TrainConfig | Mapping[str, Any] | None = None,
    settings: LRFindConfig | Mapping[str, Any] | None = None,
    task: Literal["classification", "regression", "multilabel"] | None = None,
    progress: bool | Literal["auto", "on", "off"] = "auto",
) -> LRRangeResult:
    """Run the LR range test on ``model`` with ``data`` (a bundle's train split, a ``Split``
    or an ``(inputs, targets)`` pair) and suggest an lr.

    The optimizer is ``optimizer`` (its state is restored afterwards) or one built from
    ``optim_config`` (default ``OptimConfig()``: Adam; ``lr: auto`` is fine here); its lr is
    overwritten in every param group at every step. Mini-batches of ``train_config.batch_size``
    (times ``accumulate``: a whole step's examples, in one pass) are drawn in a seeded order
    (``train_config.seed``, a generator of its own), the loss is ``train_config.loss`` with its
    ``reduction``, and ``grad_clip`` is applied as in ``fit`` (sampling options and
    regularization penalties are not). ``progress`` is chosen as ``fit``'s: in a notebook the
    curve is redrawn in one output as the test runs; a terminal gets a bar. The test runs where
    the model is (``train_config.device`` is not used: the model is not moved). ``settings`` (an
    ``LRFindConfig`` or a mapping of its fields) shape the ramp, the smoothing, the stop and
    which suggestion is ``result.lr``.

    Everything is validated first; then the test runs inside :func:`preserved`, so weights,
    buffers, gradients, train/eval flags, the optimizer's state and torch's global RNG are
    bit-for-bit as before, even when it fails. Raises :class:`~skier.errors.ConfigError` for
    bad settings or an optimizer that needs a closure (L-BFGS), and
    :class:`~skier.errors.DataError` for empty or unfit data.

    >>> result = lr_range_test(model, bundle, settings={"end_lr": 1.0})   # doctest: +SKIP
    >>> fit(model, bundle, lr=result.lr, epochs=10)                       # doctest: +SKIP
    """
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(problem("model", "a torch.nn.Module", type(model).__name__))
    cfg = as_section(LRFindConfig, settings, "lr_find.")
    train_cfg = as_section(TrainConfig, train_config, "train.")
    if task is None and isinstance(data, DataBundle):
        task = data.task
    if task not in (None, "classification", "regression", "multilabel"):
        tasks = "'classification', 'regression', 'multilabel' or None"
        raise ConfigError(problem("task", tasks, task))
    trainable_parameters(model)  # raises ModelError for a model with nothing to train
    split = choose_split(data)
    # The task given (a bundle's: multi-label too), else the targets' type says.
    resolved = task or ("classification" if classification_of(split) else "regression")
    loss_fn = loss_for(train_cfg, resolved)
    _check_data(model, data, split, resolved == "classification", loss_fn)
    opt = _resolve_optimizer(model, optimizer, optim_config, cfg.start_lr)

    device = model_device(model)
    split = split.to(device) if split.device != device else split
    # A step's examples (batch_size x train.accumulate), in one pass: the lr is for that step.
    size = resolve_batch_size(step_batch_size(train_cfg.batch_size, train_cfg.accumulate),
                              len(split))  # fmt: skip
    shows = display_mode(progress)
    live = LiveCurve(cfg.num_steps) if shows == "live" else None
    started = time.perf_counter()
    # An optimizer built here is thrown away afterwards: only the caller's needs restoring.
    with preserved(model, optimizer):
        curve = _run(model, opt, split, size, loss_fn, cfg, train_cfg, shows == "bar", live)
    result = _result(*curve, cfg, time.perf_counter() - started)
    if live is not None:
        live.finish(result)
    return result


def _run(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    split: Split,
    size: int,
    loss_fn: LossFn,
    cfg: LRFindConfig,
    train_cfg: TrainConfig,
    progress: bool,
    live: LiveCurve | None = None,
) -> tuple[list[float], list[float], list[float], bool]:
    """The ramp itself; the caller has snapshotted everything it changes."""
    # Dropout draws from the global RNG: seed it so the same call gives the same curve (the
    # caller's RNG state is put back by ``preserved``).
    torch.random.default_generator.manual_seed(train_cfg.seed)
    if split.device.type == "cuda":
        torch.cuda.manual_seed(train_cfg.seed)
    ramp = lr_ramp(cfg)
    tensors = (*split.inputs, split.targets)
    batches = seeded_batches(tensors, size, torch.Generator().manual_seed(train_cfg.seed),
                             len(ramp))  # fmt: skip
    smoother = _Smoother(cfg.beta)
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    best = math.inf
    diverged = False
    bar = _progress_bar(progress, cfg.num_steps)
    step = OptimizerStep(opt, model.parameters(), grad_clip=train_cfg.grad_clip,
                         grad_clip_mode=train_cfg.grad_clip_mode)  # fmt: skip
    model.train()
    forward = training_forward(model, model)  # flattened where that is the same (fit's rule)
    try:
        for lr, (*inputs, y) in zip(ramp, batches, strict=True):
            for group in opt.param_groups:  # set LR
                group["lr"] = lr
            # forward → loss → backward → clip → step, as fit takes it. The model is restored
            # afterwards, so the step taken on the batch that ends the test changes nothing.
            loss = step(lambda: _loss_and_itself(loss_fn(forward(*inputs), y)))  # noqa: B023
            value = float(loss)  # one sync per step: the stop rule needs the value
            lrs.append(lr)
            losses.append(value)
            smoothed.append(smoother.add(value))
            if bar is not None:
                bar.update(1)
                bar.set_postfix({"lr": f"{lr:.3g}", "loss": f"{smoothed[-1]:.4g}"}, refresh=False)
            if live is not None:  # the curve so far, built only when an update is due
                live.step(len(lrs), lr, smoothed[-1],
                          lambda: _result(lrs, losses, smoothed, False, cfg, 0.0))  # fmt: skip
            if not math.isfinite(smoothed[-1]):  # a non-finite loss: nothing more to learn
                diverged = True
                break
            best = min(best, smoothed[-1])
            if smoothed[-1] > cfg.divergence_factor * best:
                diverged = True
                break
    finally:
        if bar is not None:
            bar.close()
    return lrs, losses, smoothed, diverged


def _loss_and_itself(loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return loss, loss.detach()


def _result(
    lrs: list[float],
    losses: list[float],
    smoothed: list[float],
    diverged: bool,
    cfg: LRFindConfig,
    seconds: float,
) -> LRRangeResult:
    suggestions = {name: rule(lrs, smoothed) for name, rule in SUGGESTION_RULES.items()}
    finite = [s for s in smoothed if math.isfinite(s)]
    notes = []
    if suggestions[cfg.suggestion] is None:
        notes.append(
            f"the {cfg.suggestion!r} rule could not decide on a curve of {len(finite)} finite "
            f"points: start from a smaller lr_find.start_lr or raise divergence_factor."
        )
    if not diverged and finite and finite[-1] <= min(finite) * 1.0001:
        notes.append(
            "the loss was still falling at end_lr: raise lr_find.end_lr to see where it turns."
        )
    return LRRangeResult(
        lrs=lrs,
        losses=losses,
        smoothed=smoothed,
        suggestions=suggestions,
        suggestion=cfg.suggestion,
        lr=suggestions[cfg.suggestion],
        diverged=diverged,
        stop_step=len(lrs) - 1 if diverged else None,
        best_loss=min(finite) if finite else math.nan,
        settings=cfg,
        seconds=seconds,
        notes=notes,
    )
