"""Mode connectivity (Garipov, Izmailov, Podoprikhin, Vetrov and Wilson 2018): two minima found
from different seeds are joined by a straight line that crosses a loss barrier — and by a simple
curve along which the loss stays low. This module trains that curve and measures both paths.

A curve ``φ(t)``, ``t ∈ [0, 1]``, passes through the two endpoint weight settings (fixed) and
through ``bends`` control points (trained), either as a Bezier curve
``φ(t) = Σ_i C(n, i) tⁱ (1-t)ⁿ⁻ⁱ P_i`` or as a polygonal chain through the points in order.
Training draws one ``t ~ U(0, 1)`` per mini-batch and takes a step on the loss of the model with
weights ``φ(t)`` on that batch; only the bends receive gradients; weight decay is applied to the
point ``φ(t)``. The loss, trained and measured, is the run's (``train.loss``, or ``loss=``).
Batch-norm statistics at any evaluated ``t`` are re-estimated on the training
data (never interpolated), for the curve and the straight line alike.

>>> result = connect(model, run_a_weights, run_b_weights, data)        # doctest: +SKIP
>>> result.summary["barrier_reduction"]                               # doctest: +SKIP
0.93
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skier.config.base import as_section
from skier.config.diagnostics import ConnectConfig
from skier.config.run import OptimConfig, ScheduleConfig, TrainConfig
from skier.data.types import DataBundle, Split
from skier.diagnostics._common import (
    ParamList,
    classification_of,
    measured_loss,
    model_device,
    preserved,
    trainable_parameters,
)
from skier.diagnostics._evaluate import BATCH_NORM, Evaluator, recompute_batch_norm
from skier.errors import ConfigError, DataError, ModelError
from skier.optim import build_optimizer
from skier.optim.schedules import build_schedule
from skier.train.batches import resolve_batch_size, step_batch_size, steps_per_epoch
from skier.train.callbacks.progress import progress_bar_class
from skier.train.losses import Loss, LossFn, loss_for
from skier.train.metrics import count_wrong
from skier.train.step import OptimizerStep

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ConnectResult", "Curve", "connect", "evaluate_path"]

METRICS = ("train_loss", "train_error", "test_loss", "test_error")


class Curve:
    """A Bezier curve or polygonal chain through ``start``, trained bends, and ``end``.

    ``start`` and ``end`` are lists with one tensor per trainable parameter; the bends start on
    the straight line between them (evenly spaced), so training begins from the line.

    >>> c = Curve([torch.zeros(2)], [torch.ones(2)], kind="bezier", bends=1)
    >>> c.point(0.5)[0].tolist()
    [0.5, 0.5]
    """

    def __init__(
        self, start: Sequence[torch.Tensor], end: Sequence[torch.Tensor], *, kind: str, bends: int
    ) -> None:
        if kind not in ("bezier", "polychain"):
            raise ConfigError(f"connect.curve must be 'bezier' or 'polychain'; got {kind!r}.")
        self.kind, self.bends = kind, bends
        self.start = [t.detach().clone() for t in start]
        self.end = [t.detach().clone() for t in end]
        self.control = [
            [nn.Parameter(torch.lerp(a, b, (i + 1) / (bends + 1))) for a, b in zip(
                self.start, self.end, strict=True)]
            for i in range(bends)
        ]  # fmt: skip

    def parameters(self) -> list[nn.Parameter]:
        """The trainable bends (what the optimizer updates)."""
        return [p for bend in self.control for p in bend]

    def coefficients(self, t: float) -> list[float]:
        """Weights of the control points ``[start, bend 1, ..., end]`` at ``t``."""
        n = self.bends + 1
        if self.kind == "bezier":
            return [math.comb(n, i) * t**i * (1.0 - t) ** (n - i) for i in range(n + 1)]
        # Polychain: knots at i/n; linear between the two around t.
        segment = min(int(t * n), n - 1)
        local = t * n - segment
        out = [0.0] * (n + 1)
        out[segment], out[segment + 1] = 1.0 - local, local
        return out

    def _points(self) -> list[Sequence[torch.Tensor]]:
        return [self.start, *self.control, self.end]

    def point(self, t: float) -> ParamList:
        """``φ(t)``: differentiable in the bends. Terms with a zero weight are left out, so the
        curve passes exactly through the endpoints at t = 0 and t = 1."""
        terms = [(c, pts) for c, pts in zip(self.coefficients(t), self._points(), strict=True)]
        terms = [(c, pts) for c, pts in terms if c != 0.0]
        out: ParamList = []
        for k in range(len(self.start)):
            value = terms[0][1][k] * terms[0][0] if terms[0][0] != 1.0 else terms[0][1][k]
            for c, pts in terms[1:]:
                value = value + c * pts[k]
            out.append(value)
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The bends as plain tensors (for a weights-only checkpoint)."""
        return {
            f"bend{i}.{k}": p.detach().cpu().clone()
            for i, bend in enumerate(self.control)
            for k, p in enumerate(bend)
        }


@dataclass
class ConnectResult:
    """What :func:`connect` measured. ``curve`` and ``line`` map each of :data:`METRICS` to its
    values at ``ts``; ``summary`` holds maxima, means, barrier heights and the reduction."""

    ts: np.ndarray
    curve: dict[str, np.ndarray]
    line: dict[str, np.ndarray]
    summary: dict[str, Any]
    ensemble: dict[str, Any]
    plane: dict[str, Any] | None
    epoch_losses: list[float]
    settings: ConnectConfig
    eval_split: str
    seconds: float
    training_seconds: float
    bends: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def plot(self) -> Figure:
        """Loss and error along the line and the curve, and the plane when measured
        (:func:`skier.plots.plot_connectivity_figure`)."""
        from skier.plots.connectivity import plot_connectivity_figure  # only when drawing

        return plot_connectivity_figure(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe values and summary (no tensors)."""

        def arr(values: np.ndarray) -> Any:
            return np.where(np.isfinite(values), values, np.nan).astype(object).tolist()

        plane = None
        if self.plane is not None:
            plane = {k: arr(np.asarray(v)) if isinstance(v, np.ndarray) else v
                     for k, v in self.plane.items()}  # fmt: skip
        return {
            "ts": self.ts.tolist(),
            "curve": {k: arr(v) for k, v in self.curve.items()},
            "line": {k: arr(v) for k, v in self.line.items()},
            "summary": self.summary,
            "ensemble": self.ensemble,
            "plane": plane,
            "epoch_losses": self.epoch_losses,
            "settings": self.settings.model_dump(mode="json"),
            "eval_split": self.eval_split,
            "seconds": self.seconds,
            "training_seconds": self.training_seconds,
        }

    def to_csv(self) -> str:
        head = ["t"] + [f"line_{m}" for m in METRICS] + [f"curve_{m}" for m in METRICS]
        lines = [",".join(head)]
        for i, t in enumerate(self.ts):
            row = [t] + [self.line[m][i] for m in METRICS] + [self.curve[m][i] for m in METRICS]
            lines.append(",".join(repr(float(v)) for v in row))
        return "\n".join(lines) + "\n"


# --- evaluation ----------------------------------------------------------------------------------


def _set(params: Sequence[nn.Parameter], values: Sequence[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, v in zip(params, values, strict=True):
            p.copy_(v)


def evaluate_path(
    model: nn.Module,
    points: Sequence[ParamList],
    train: Split,
    test: Split,
    *,
    classification: bool,
    recompute_bn: bool = True,
    batch_size: int = 4096,
    seed: int = 0,
    loss: Loss | None = None,
) -> dict[str, np.ndarray]:
    """Train and test loss (``loss``, else cross-entropy or MSE) and error of ``model`` at each
    weight setting in ``points``.

    With batch norm (and ``recompute_bn``), each point's statistics are re-estimated on
    ``train`` first. The caller restores the model (this writes its weights and buffers).
    """
    params = [p for _, p in trainable_parameters(model)]
    has_bn = recompute_bn and any(isinstance(m, BATCH_NORM) for m in model.modules())
    on_train, on_test = (
        Evaluator(model, s, classification=classification, batch_size=batch_size,
                  batch_points=1, loss=loss)
        for s in (train, test)
    )  # fmt: skip
    out = {m: np.full(len(points), np.nan) for m in METRICS}
    model.eval()
    for i, values in enumerate(points):
        _set(params, values)
        if has_bn:
            recompute_batch_norm(model, train, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            out["train_loss"][i], out["train_error"][i] = on_train._one()
            out["test_loss"][i], out["test_error"][i] = on_test._one()
    return out


def _path_summary(values: dict[str, np.ndarray]) -> dict[str, float]:
    summary: dict[str, float] = {}
    for m in METRICS:
        v = values[m]
        if not np.isfinite(v).any():
            continue
        ends = (v[0] + v[-1]) / 2.0
        summary[f"{m}_max"] = float(np.nanmax(v))
        summary[f"{m}_mean"] = float(np.nanmean(v))
        summary[f"{m}_barrier"] = float(np.nanmax(v) - ends)
    return summary


# --- the diagnostic ------------------------------------------------------------------------------


def _weights(source: Mapping[str, torch.Tensor] | nn.Module, names: Sequence[str], what: str,
             model: nn.Module) -> ParamList:  # fmt: skip
    found = dict(source.state_dict()) if isinstance(source, nn.Module) else dict(source)
    reference = dict(model.named_parameters())
    out = []
    for n in names:
        if n not in found:
            raise ModelError(
                f"{what} must have every parameter of the model; got none for {n!r}. "
                "Both endpoints need the model's architecture (same config.model)."
            )
        if tuple(found[n].shape) != tuple(reference[n].shape):
            raise ModelError(
                f"{what} must have the model's architecture; parameter {n!r} has shape "
                f"{tuple(found[n].shape)}, the model's {tuple(reference[n].shape)}."
            )
        out.append(found[n].detach().to(reference[n].device, reference[n].dtype).clone())
    return out


def _factor(progress: float) -> float:
    # Garipov et al.'s schedule: constant to half-way, then linear to 1% at 90%, then 1%.
    if progress <= 0.5:
        return 1.0
    if progress <= 0.9:
        return 1.0 - (progress - 0.5) / 0.4 * 0.99
    return 0.01


def connect(
    model: nn.Module,
    start: Mapping[str, torch.Tensor] | nn.Module,
    end: Mapping[str, torch.Tensor] | nn.Module,
    data: DataBundle,
    settings: ConnectConfig | Mapping[str, Any] | None = None,
    *,
    optim_config: OptimConfig | Mapping[str, Any] | None = None,
    train_config: TrainConfig | Mapping[str, Any] | None = None,
    schedule_config: ScheduleConfig | Mapping[str, Any] | None = None,
    loss: str | LossFn | Loss | None = None,
    progress: bool = False,
) -> ConnectResult:
    """Train a curve from ``start`` to ``end`` (weights of ``model``'s architecture: state dicts
    or models) on ``data``'s training split, then evaluate it and the straight line.

    ``model`` is the template the weights are put into; it is left exactly as it was. The test
    split (the validation split if there is none) gives the test metrics. The curve is trained
    on, and both paths measured with, ``loss`` (a name, a callable or a built
    :class:`~skier.train.losses.Loss`), else ``train_config``'s ``train.loss`` and options.
    """
    cfg: ConnectConfig = as_section(ConnectConfig, settings, "connect.")
    optim: OptimConfig = as_section(OptimConfig, optim_config, "optim.")
    train_cfg: TrainConfig = as_section(TrainConfig, train_config, "train.")
    schedule: ScheduleConfig = as_section(ScheduleConfig, schedule_config, "schedule.")
    if optim.lr == "auto":
        raise ConfigError(
            "optim.lr must be a number to train a curve; got 'auto'. Give the lr the endpoints "
            "trained with (the runs' config.yaml holds it)."
        )
    if cfg.schedule == "config" and schedule.name == "plateau":
        raise ConfigError(
            "schedule.name must not be 'plateau' for curve training (it has no validation "
            "metric to watch); got 'plateau'. Use connect.schedule: reference."
        )
    if not isinstance(data, DataBundle):
        raise DataError(
            f"data must be a DataBundle (train and test splits); got {type(data).__name__}."
        )
    held_out = data.test if data.test is not None else data.val
    if held_out is None:
        raise DataError(
            "data must have a test or validation split to measure the paths on; got neither."
        )
    names = [n for n, _ in trainable_parameters(model)]
    w_start = _weights(start, names, "start", model)
    w_end = _weights(end, names, "end", model)
    device = model_device(model)
    train, test = data.train.to(device), held_out.to(device)
    if len(train) == 0:
        raise DataError("data.train must hold examples; got an empty split.")
    classification = classification_of(train, data.task)
    run_loss = loss_for(train_cfg, data.task) if loss is None else loss
    measured = measured_loss(run_loss, train, data.task, "data.train")
    assert measured is not None  # a loss was given
    curve = Curve(w_start, w_end, kind=cfg.curve, bends=cfg.bends)
    t0 = time.perf_counter()
    with preserved(model):
        epoch_losses = _train_curve(model, curve, train, cfg, optim, train_cfg, schedule,
                                    measured, progress)  # fmt: skip
        training_seconds = time.perf_counter() - t0
        ts = np.linspace(0.0, 1.0, cfg.points)
        with torch.no_grad():
            curve_points = [[v.detach() for v in curve.point(float(t))] for t in ts]
            line_points = [
                [torch.lerp(a, b, float(t)) for a, b in zip(w_start, w_end, strict=True)]
                for t in ts
            ]
        kwargs = {"classification": classification, "batch_size": cfg.eval_batch_size,
                  "seed": cfg.seed, "loss": measured}  # fmt: skip
        on_curve = evaluate_path(model, curve_points, train, test, **kwargs)  # type: ignore[arg-type]
        on_line = evaluate_path(model, line_points, train, test, **kwargs)  # type: ignore[arg-type]
        ensemble = _ensemble(model, curve, train, test, cfg, classification, measured)
        plane = (
            _plane(model, curve, train, cfg, classification, measured) if cfg.plane_points else None
        )
    summary = _summary(on_curve, on_line)
    return ConnectResult(
        ts=ts,
        curve=on_curve,
        line=on_line,
        summary=summary,
        ensemble=ensemble,
        plane=plane,
        epoch_losses=epoch_losses,
        settings=cfg,
        eval_split="test" if data.test is not None else "val",
        seconds=time.perf_counter() - t0,
        training_seconds=training_seconds,
        bends=curve.state_dict(),
    )


def _summary(on_curve: dict[str, np.ndarray], on_line: dict[str, np.ndarray]) -> dict[str, Any]:
    curve_s, line_s = _path_summary(on_curve), _path_summary(on_line)
    summary: dict[str, Any] = {"curve": curve_s, "line": line_s}
    line_barrier = line_s.get("train_loss_barrier")
    curve_barrier = curve_s.get("train_loss_barrier")
    if line_barrier is not None and curve_barrier is not None and line_barrier > 0:
        summary["barrier_reduction"] = 1.0 - max(curve_barrier, 0.0) / line_barrier
    else:
        summary["barrier_reduction"] = None
    summary["line_train_loss_barrier"] = line_barrier
    summary["curve_train_loss_barrier"] = curve_barrier
    return summary


def _train_curve(
    model: nn.Module,
    curve: Curve,
    train: Split,
    cfg: ConnectConfig,
    optim: OptimConfig,
    train_cfg: TrainConfig,
    schedule: ScheduleConfig,
    loss_fn: Loss,
    progress: bool,
) -> list[float]:
    from torch.func import functional_call

    # Weight decay acts on the point on the curve (below), not on the bends themselves.
    decay = float(optim.weight_decay or 0.0)
    optimizer = build_optimizer(curve.parameters(), optim.model_copy(update={"weight_decay": None}))
    n = len(train)
    # A step's examples (batch_size x train.accumulate) in one pass, as many steps as fit takes.
    batch = resolve_batch_size(step_batch_size(train_cfg.batch_size, train_cfg.accumulate), n)
    steps = steps_per_epoch(n, batch, drop_last=train_cfg.drop_last)
    total = cfg.epochs * steps
    # The one optimizer step of skier (as fit takes it): clipping of the curve's gradients too.
    step_of = OptimizerStep(optimizer, curve.parameters(), grad_clip=train_cfg.grad_clip,
                            grad_clip_mode=train_cfg.grad_clip_mode)  # fmt: skip
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    sched = None
    if cfg.schedule == "config":
        sched = build_schedule(optimizer, schedule, epochs=cfg.epochs, steps_per_epoch=steps)
    generator = torch.Generator().manual_seed(cfg.seed)
    names = [n for n, _ in trainable_parameters(model)]
    buffers = dict(model.named_buffers())
    model.train()
    losses: list[float] = []
    bar = None
    if progress:
        tqdm = progress_bar_class()
        bar = tqdm(total=total, desc="curve", unit="step", leave=False)
    step = 0
    try:
        for epoch in range(cfg.epochs):
            order = torch.randperm(n, generator=generator).to(train.device)
            epoch_sum = torch.zeros((), dtype=torch.float64, device=train.device)
            count = 0
            for first in range(0, n, batch):
                index = order[first : first + batch]
                if train_cfg.drop_last and index.numel() < batch:
                    break
                if sched is None:
                    for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
                        group["lr"] = lr * _factor(step / max(total, 1))
                t = float(torch.rand((), generator=generator))
                inputs = tuple(x[index] for x in train.inputs)
                y = train.targets[index]

                def forward() -> tuple[torch.Tensor, torch.Tensor]:
                    weights = curve.point(t)  # noqa: B023 - called within this iteration
                    params = {**dict(zip(names, weights, strict=True)), **buffers}
                    out = functional_call(model, params, inputs)  # noqa: B023
                    loss = loss_fn(out, y)  # noqa: B023
                    if not decay:
                        return loss, loss.detach()
                    penalty = 0.5 * decay * sum(w.pow(2).sum() for w in weights)
                    return loss + penalty, loss.detach()

                loss = step_of(forward)
                if sched is not None and sched.interval == "step":
                    sched.step()
                epoch_sum += loss * index.numel()
                count += index.numel()
                step += 1
                if bar is not None:
                    bar.update(1)
            if sched is not None and sched.interval == "epoch":
                sched.step({})
            losses.append(float(epoch_sum) / max(count, 1))
            if not math.isfinite(losses[-1]):
                raise ModelError(
                    f"curve training must keep a finite loss; got {losses[-1]} in epoch "
                    f"{epoch + 1}. Lower optim.lr."
                )
    finally:
        if bar is not None:
            bar.close()
    return losses


def _ensemble(
    model: nn.Module, curve: Curve, train: Split, test: Split, cfg: ConnectConfig,
    classification: bool, loss: Loss,
) -> dict[str, Any]:  # fmt: skip
    """Averaged predictions of models sampled along the curve, against the endpoints alone."""
    params = [p for _, p in trainable_parameters(model)]
    has_bn = any(isinstance(m, BATCH_NORM) for m in model.modules())
    ts = np.linspace(0.0, 1.0, cfg.ensemble_points)
    outputs = []
    model.eval()
    with torch.no_grad():
        for t in ts:
            _set(params, curve.point(float(t)))
            if has_bn:
                recompute_batch_norm(
                    model, train, generator=torch.Generator().manual_seed(cfg.seed)
                )
            chunks = [
                model(*(x[i : i + cfg.eval_batch_size] for x in test.inputs)).float()
                for i in range(0, len(test), cfg.eval_batch_size)
            ]
            out = torch.cat(chunks)
            if classification:  # probabilities over the classes, or of each label less 1/2
                out = out.sigmoid() - 0.5 if loss.targets == "binary" else out.softmax(dim=-1)
            outputs.append(out)
    y = test.targets

    def score(pred: torch.Tensor) -> float:
        if classification and loss.targets == "binary":  # a label is right on its side of 1/2
            return 1.0 - float(count_wrong(pred, y)) / len(y)
        if classification:
            return float((pred.argmax(dim=-1) == y).double().mean())
        return float(F.mse_loss(pred, y.reshape(pred.shape)))

    name = "accuracy" if classification else "mse"
    return {
        "metric": name,
        "ts": ts.tolist(),
        "start": score(outputs[0]),
        "end": score(outputs[-1]),
        "endpoints_ensemble": score((outputs[0] + outputs[-1]) / 2),
        "curve_ensemble": score(torch.stack(outputs).mean(dim=0)),
    }


def _plane(
    model: nn.Module, curve: Curve, train: Split, cfg: ConnectConfig, classification: bool,
    measured: Loss,
) -> dict[str, Any]:  # fmt: skip
    """Train loss on the plane through the endpoints and the first bend, and the curve's path
    projected on it (exactly in the plane for one bend)."""
    start, end, bend = curve.start, curve.end, [p.detach() for p in curve.control[0]]
    u = [b - a for a, b in zip(start, end, strict=True)]
    u_norm = math.sqrt(sum(float((x * x).sum()) for x in u))
    uhat = [x / u_norm for x in u]
    w = [c - a for a, c in zip(start, bend, strict=True)]
    along = sum(float((x * y).sum()) for x, y in zip(w, uhat, strict=True))
    v = [x - along * y for x, y in zip(w, uhat, strict=True)]
    v_norm = math.sqrt(sum(float((x * x).sum()) for x in v))
    if v_norm < 1e-12:
        v_norm = 1.0  # the bend lies on the line: any orthogonal direction would do
        g = torch.Generator().manual_seed(cfg.seed)
        v = [torch.randn(x.shape, generator=g).to(x) for x in u]
        along_v = sum(float((x * y).sum()) for x, y in zip(v, uhat, strict=True))
        v = [x - along_v * y for x, y in zip(v, uhat, strict=True)]
        scale = math.sqrt(sum(float((x * x).sum()) for x in v))
        v = [x / scale for x in v]
        vhat = v
    else:
        vhat = [x / v_norm for x in v]

    def coords(point: Sequence[torch.Tensor]) -> tuple[float, float]:
        d = [p - a for p, a in zip(point, start, strict=True)]
        return (
            sum(float((x * y).sum()) for x, y in zip(d, uhat, strict=True)),
            sum(float((x * y).sum()) for x, y in zip(d, vhat, strict=True)),
        )

    m = cfg.plane_margin
    bend_xy = coords(bend)
    high_y = max(bend_xy[1], 0.1 * u_norm)
    xs = np.linspace(-m * u_norm, (1 + m) * u_norm, cfg.plane_points)
    ys = np.linspace(-m * high_y, (1 + m) * high_y, cfg.plane_points)
    params = [p for _, p in trainable_parameters(model)]
    has_bn = any(isinstance(mod, BATCH_NORM) for mod in model.modules())
    ev = Evaluator(model, train, classification=classification,
                    batch_size=cfg.eval_batch_size, batch_points=1, loss=measured)  # fmt: skip
    loss = np.full((len(ys), len(xs)), np.nan)
    model.eval()
    with torch.no_grad():
        for i, y in enumerate(ys):
            for j, x in enumerate(xs):
                _set(params, [a + float(x) * p + float(y) * q
                              for a, p, q in zip(start, uhat, vhat, strict=True)])  # fmt: skip
                if has_bn:
                    recompute_batch_norm(
                        model, train, generator=torch.Generator().manual_seed(cfg.seed)
                    )
                loss[i, j] = ev._one()[0]
        path = [coords(curve.point(float(t))) for t in np.linspace(0, 1, 101)]
    return {
        "x": xs,
        "y": ys,
        "train_loss": loss,
        "start": (0.0, 0.0),
        "end": (u_norm, 0.0),
        "bend": bend_xy,
        "path": [list(p) for p in path],
        "in_plane": curve.bends == 1,
    }
