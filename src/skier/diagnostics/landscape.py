"""Loss landscapes (Li, Xu, Taylor, Studer and Goldstein 2018): loss and error around trained
weights, along one direction (a curve) or over a plane of two (a surface).

The weights are moved as ``θ(α, β) = θ* + α·δ + β·η``; the loss and error at each point are the
mean over a whole split (or a fixed seeded subset), in eval mode. Directions:

* ``random``: Gaussian, then *filter-normalized* — each slice along dim 0 of a weight tensor
  (a convolution filter, a row of a linear layer) is rescaled to the norm of the matching slice
  of the weights, so that a layer's scale (which batch norm makes meaningless) does not decide
  how far a step goes. ``layer`` normalizes whole tensors, ``none`` keeps the raw Gaussian.
  Biases and batch-norm parameters (1-D tensors) get a zero direction (``ignore: biasbn``).
* ``hessian``: the top eigenvectors of the Hessian (see :mod:`skier.diagnostics.sharpness`),
  each scaled to the norm of the weights so that α = 1 is a move as large as the weights.
* ``init`` / two runs: the straight line ``θ(α) = θ_A + α (θ_B - θ_A)`` from the initial weights
  (α = 0) to the final ones (α = 1), or from this run to another; batch-norm statistics are
  re-estimated on the training data at each point rather than interpolated.

>>> result = landscape(model, data, LandscapeConfig(dims=2, points=21))  # doctest: +SKIP
>>> result.minimum                                                      # doctest: +SKIP
{'alpha': 0.0, 'beta': 0.1, 'loss': 0.031}

Evaluation stays in memory: the split is one tensor on the model's device, the weights of a
point are written in place, and no DataLoader is built per point. Several grid points can be
evaluated in one batched forward pass (``torch.func.vmap``) where ``bench/`` shows it is faster.
A model that is a plain graph of ``Linear`` layers and activations (an MLP, residual or not)
has its rows evaluated as stacked passes of several points each, with no Python per point
(:mod:`skier.diagnostics._rows`); any other model goes one point at a time. One point at a
time, the layers that see only the data (the first ``Linear`` or convolution) are not re-run:
their output is linear in their weights, so it is summed from three outputs computed once
(:mod:`skier.diagnostics._factored`); the few-output ``Linear`` layers (a classifier's head) run
through a faster product (:mod:`skier.diagnostics._heads`), and a row's numbers are read from the
device once.

This module holds the grid and its evaluation; the directions are in
:mod:`skier.diagnostics.directions` and the result types in
:mod:`skier.diagnostics.landscape_result` (both importable from here as before).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from skier.config.base import as_section
from skier.config.diagnostics import LandscapeConfig
from skier.data.types import DataBundle, Split
from skier.diagnostics._common import (
    ParamList,
    choose_split,
    classification_of,
    measured_loss,
    model_device,
    preserved,
    seeded_subset,
    trainable_parameters,
)
from skier.diagnostics._evaluate import BATCH_NORM, Evaluator, recompute_batch_norm
from skier.diagnostics._factored import InputLayers
from skier.diagnostics._heads import Heads
from skier.diagnostics._rows import RowPlan
from skier.diagnostics.directions import (
    check_shapes,
    direction_between,
    make_directions,
    normalize_direction,
    random_direction,
    weights_by_name,
)
from skier.diagnostics.landscape_result import LandscapeResult, Surface
from skier.errors import ConfigError, DataError, ModelError
from skier.train.losses import Loss, LossFn

__all__ = [
    "LandscapeResult",
    "Surface",
    "default_batch_points",
    "direction_between",
    "interpolate",
    "landscape",
    "normalize_direction",
    "random_direction",
    "recompute_batch_norm",
]


def _axis(bounds: tuple[float, float], points: int, special: Sequence[float]) -> np.ndarray:
    """``points`` evenly spaced values, plus the ``special`` ones inside the range that the
    spacing misses (the model itself at 0, the other end of a line at 1), so that they are
    measured exactly rather than read between two grid points."""
    values = np.linspace(bounds[0], bounds[1], points)
    for x in special:
        if bounds[0] <= x <= bounds[1]:
            near = np.isclose(values, x, rtol=0.0, atol=1e-9)
            values = np.where(near, x, values) if near.any() else np.append(values, x)
    return np.sort(values)


def _grid(settings: LandscapeConfig) -> tuple[np.ndarray, np.ndarray | None]:
    line = settings.direction in ("init", "run")
    alphas = _axis(settings.xrange, settings.points, (0.0, 1.0) if line else (0.0,))
    if settings.dims == 1:
        return alphas, None
    return alphas, _axis(settings.yrange, settings.points_y or settings.points, (0.0,))


def _mini_batches(split: Split, settings: LandscapeConfig, count: int = 2) -> list[Split]:
    size = settings.batch_size or 128
    if count * size > len(split):
        raise DataError(
            f"landscape.batch_size must leave room for {count} different mini-batches of the "
            f"{settings.split} split ({len(split)} examples); got {size}."
        )
    generator = torch.Generator().manual_seed(settings.seed + 1)
    order = torch.randperm(len(split), generator=generator).to(split.device)
    return [split.take(order[i * size : (i + 1) * size]) for i in range(count)]


def fingerprint(model: nn.Module, settings: LandscapeConfig, extra: str = "") -> str:
    """A short hash of the weights and settings: a saved partial grid resumes only onto the
    same model and grid."""
    h = hashlib.sha256(settings.model_dump_json().encode() + extra.encode())
    for name, p in trainable_parameters(model):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _loss_stamp(loss: Loss | None) -> str:
    """What the fingerprint knows of the loss: a partial grid resumes onto the same one."""
    return "" if loss is None else loss.stamp


PartialCallback = Callable[[dict[str, Any]], None]


def landscape(
    model: nn.Module,
    data: DataBundle | Split | tuple[Any, Any],
    settings: LandscapeConfig | Mapping[str, Any] | None = None,
    *,
    directions: Sequence[ParamList] | None = None,
    task: str | None = None,
    loss: str | LossFn | Loss | None = None,
    batch_points: int | None = None,
    progress: bool = False,
    resume: Mapping[str, Any] | None = None,
    on_row: PartialCallback | None = None,
) -> LandscapeResult:
    """Loss and error of ``model`` along one direction (``dims=1``) or over a plane (``dims=2``).

    ``directions`` overrides the ones ``settings.direction`` would make (one parameter list
    per dimension, e.g. from :func:`direction_between`). ``on_row`` receives a partial state
    after each row of the grid; passing it back as ``resume`` continues a stopped grid where it
    stopped (same model and settings only). ``batch_points`` grid points are evaluated in one
    vmap'd forward pass (default: :func:`default_batch_points`). The model is left exactly as
    it was.

    The loss is ``loss``, the run's ``train.loss`` (a name for ``task``, a callable
    ``f(outputs, targets)`` or a built :class:`~skier.train.losses.Loss`, options included);
    by default cross-entropy or MSE by the task (binary cross-entropy for multi-label data).
    """
    cfg = as_section(LandscapeConfig, settings, "landscape.")
    if cfg.direction in ("init", "run"):
        raise ConfigError(
            f"landscape.direction must be 'random' or 'hessian' for landscape(); got "
            f"{cfg.direction!r}. The line between two weight settings is interpolate(start, "
            "end, data); on the command line `skier landscape RUN --direction init` or "
            "`--to OTHER_RUN`."
        )
    split = seeded_subset(choose_split(data, cfg.split), cfg.subset, cfg.seed)
    if len(split) == 0:
        raise DataError(f"landscape.split must hold examples; got an empty {cfg.split!r} split.")
    device = model_device(model)
    split = split.to(device)
    task = task if task is not None or not isinstance(data, DataBundle) else data.task
    classification = classification_of(split, task)
    measured = measured_loss(loss, split, task, f"data.{cfg.split}")
    batches = []
    if cfg.per_batch:  # drawn from the whole split, not the subset
        batches = [b.to(device) for b in _mini_batches(choose_split(data, cfg.split), cfg)]
    if directions is not None and len(directions) != cfg.dims:
        raise ConfigError(
            f"directions must hold one direction per dimension ({cfg.dims}); got {len(directions)}."
        )
    if batch_points is None:
        batch_points = default_batch_points(model)
    with preserved(model):
        model.eval()
        base = [p.detach().clone() for _, p in trainable_parameters(model)]
        dirs = (
            list(directions) if directions is not None
            else make_directions(model, cfg, data, task=task, loss=measured)
        )  # fmt: skip
        if directions is not None:
            check_shapes(dirs, base)
        return _sweep(
            model, split, cfg, base, dirs, batches, classification, batch_points, progress,
            resume, on_row, fingerprint(model, cfg, _loss_stamp(measured)), measured=measured,
        )  # fmt: skip


def default_batch_points(model: nn.Module) -> int:
    """Grid points per forward pass: one on the CPU, where a point's pass skips the layers that
    see only the data (:mod:`skier.diagnostics._factored`) and the vmap'd pass of 8 points was
    2-3x slower per point (bench/bench_reference_tools.py, 2026-12-07); several for small models
    without batch norm on an accelerator, where one vmap'd pass should beat a loop (not
    measured there)."""
    if model_device(model).type == "cpu":
        return 1
    if any(isinstance(m, BATCH_NORM) for m in model.modules()):
        return 1
    size = sum(p.numel() for p in model.parameters())
    return 8 if size <= 200_000 else 1


def _sweep(
    model: nn.Module,
    split: Split,
    cfg: LandscapeConfig,
    base: ParamList,
    dirs: list[ParamList],
    batches: list[Split],
    classification: bool,
    batch_points: int,
    progress: bool,
    resume: Mapping[str, Any] | None,
    on_row: PartialCallback | None,
    stamp: str,
    *,
    measured: Loss | None = None,
) -> LandscapeResult:
    t0 = time.perf_counter()
    alphas, betas = _grid(cfg)
    shape = (len(alphas),) if betas is None else (len(betas), len(alphas))
    sets = [(f"{cfg.split} ({len(split)} examples)", split)]
    sets += [(f"mini-batch {i + 1} ({len(b)} examples)", b) for i, b in enumerate(batches)]
    evaluators = [
        Evaluator(
            model,
            s,
            classification=classification,
            batch_size=cfg.eval_batch_size,
            batch_points=batch_points,
            loss=measured,
        )
        for _, s in sets
    ]
    losses = [np.full(shape, np.nan) for _ in sets]
    errors = [np.full(shape, np.nan) for _ in sets]
    rows = 1 if betas is None else len(betas)
    done_rows = 0
    if resume is not None:
        if resume.get("fingerprint") != stamp:
            raise ConfigError(
                "landscape resume state must come from the same model and settings; got one "
                f"with fingerprint {resume.get('fingerprint')!r} (this grid: {stamp!r}). "
                "Delete the partial file to start again."
            )
        done_rows = int(resume["rows_done"])
        for i in range(len(sets)):
            losses[i] = np.asarray(resume["losses"][i], dtype=float).reshape(shape)
            errors[i] = np.asarray(resume["errors"][i], dtype=float).reshape(shape)
    # A plain graph of Linear layers and activations: a row's points stacked, no Python per
    # point. Else one point per pass: the layers that see only the data are factored out of
    # every point, and the few-output layers run through a faster product.
    plans = [_row_plan(model, s, ev, base, dirs) if batch_points == 1 else None
             for (_, s), ev in zip(sets, evaluators, strict=True)]  # fmt: skip
    speedups = [_speedups(model, s, ev, dirs, cfg) if batch_points == 1 and plan is None else None
                for (_, s), ev, plan in zip(sets, evaluators, plans, strict=True)]  # fmt: skip
    bar = _bar(progress, rows * len(alphas), done_rows * len(alphas))
    evaluations = 0
    try:
        for row in range(done_rows, rows):
            beta = 0.0 if betas is None else float(betas[row])
            fast = all(p is not None or f is not None for p, f in zip(plans, speedups, strict=True))
            weights = [] if fast else [_point(base, dirs, float(a), beta) for a in alphas]
            for i, ev in enumerate(evaluators):
                found, plan = speedups[i], plans[i]
                if plan is not None:
                    loss, error = _planned_row(plan, ev, base, dirs, alphas, beta)
                elif found is not None:
                    loss, error = _one_point_row(ev, *found, base, dirs, alphas, beta)
                else:
                    loss, error = ev.at(weights)
                target = (slice(None),) if betas is None else (row, slice(None))
                losses[i][target] = loss
                errors[i][target] = error
            evaluations += len(alphas) * len(evaluators)
            if bar is not None:
                bar.update(len(alphas))
            if on_row is not None:
                on_row(
                    {
                        "fingerprint": stamp,
                        "rows_done": row + 1,
                        "rows": rows,
                        "losses": [v.tolist() for v in losses],
                        "errors": [v.tolist() for v in errors],
                    }
                )
    finally:
        if bar is not None:
            bar.close()
    surfaces = [
        Surface(name, len(s), losses[i], errors[i] if classification else None)
        for i, (name, s) in enumerate(sets)
    ]
    return LandscapeResult(
        dims=cfg.dims,
        direction=cfg.direction,
        alphas=alphas,
        betas=betas,
        surface=surfaces[0],
        batches=surfaces[1:],
        split=cfg.split,
        settings=cfg,
        seconds=time.perf_counter() - t0,
        evaluations=evaluations,
        batched_points=batch_points,
        directions=[[d.detach().cpu() for d in ds] for ds in dirs],
    )


def _speedups(
    model: nn.Module, split: Split, ev: Evaluator, dirs: list[ParamList], cfg: LandscapeConfig
) -> tuple[InputLayers | None, Heads | None] | None:
    """What a one-point-at-a-time row of ``split`` can skip or run faster (``None``: nothing)."""
    layers = InputLayers.find(model, split, ev.params, dirs, cfg.eval_batch_size)
    skip = set() if layers is None else {layer.module for layer in layers.layers}
    heads = Heads.find(model, split, cfg.eval_batch_size, pads=ev.pads, skip=skip)
    return (layers, heads) if layers is not None or heads is not None else None


def _row_plan(model: nn.Module, split: Split, ev: Evaluator, base: ParamList,
              dirs: list[ParamList]) -> RowPlan | None:  # fmt: skip
    return RowPlan.find(model, split, ev.params, base, dirs, loss=ev.loss,
                        classification=ev.classification)  # fmt: skip


def _planned_row(
    plan: RowPlan,
    ev: Evaluator,
    base: ParamList,
    dirs: Sequence[ParamList],
    alphas: np.ndarray,
    beta: float,
) -> tuple[list[float], list[float]]:
    """A row of stacked points; a point the plan cannot count exactly (an arg-max tie, a
    NaN) is evaluated again with the model."""
    loss, error, again = plan.row(base, dirs, alphas, beta)
    if again:
        redone = ev.at([_point(base, dirs, float(alphas[i]), beta) for i in again])
        for j, i in enumerate(again):
            loss[i], error[i] = redone[0][j], redone[1][j]
    return loss, error


def _one_point_row(
    ev: Evaluator,
    layers: InputLayers | None,
    heads: Heads | None,
    base: ParamList,
    dirs: Sequence[ParamList],
    alphas: np.ndarray,
    beta: float,
) -> tuple[list[float], list[float]]:
    """One row of points, one forward pass each: the factored layers' outputs summed, the
    few-output layers' faster product; the row's numbers read in one synchronisation."""
    points = []
    if layers is not None:
        layers.set_row(beta)
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        for swapped in (layers, heads):
            if swapped is not None:
                stack.enter_context(swapped.installed())
        # the row's start θ0 + β·η once, then each point's weights in two multi-tensor ops
        start = base if len(dirs) == 1 else torch._foreach_add(base, dirs[1], alpha=beta)
        params: list[torch.Tensor] = list(ev.params)
        for a in alphas:
            torch._foreach_copy_(params, start)
            torch._foreach_add_(params, dirs[0], alpha=float(a))
            if layers is not None:
                layers.set_alpha(float(a))
            points.append(ev.sums())
        return ev.means(points)


def _point(base: ParamList, dirs: Sequence[ParamList], alpha: float, beta: float) -> ParamList:
    if len(dirs) == 1:
        return [b + alpha * d for b, d in zip(base, dirs[0], strict=True)]
    return [b + alpha * d + beta * e for b, d, e in zip(base, dirs[0], dirs[1], strict=True)]


def _bar(progress: bool, total: int, initial: int) -> Any:
    if not progress:
        return None
    from skier.train.callbacks.progress import progress_bar_class  # no warning without widgets

    return progress_bar_class()(total=total, initial=initial, desc="landscape", unit="pt",
                                leave=False)  # fmt: skip


def interpolate(
    model: nn.Module,
    other: Mapping[str, torch.Tensor] | nn.Module,
    data: DataBundle | Split | tuple[Any, Any],
    settings: LandscapeConfig | Mapping[str, Any] | None = None,
    *,
    task: str | None = None,
    loss: str | LossFn | Loss | None = None,
    labels: tuple[str, str] = ("this model", "other model"),
    progress: bool = False,
) -> LandscapeResult:
    """Loss and error on the straight line from ``model`` (α = 0) to ``other`` (α = 1).

    ``other`` is a model of the same architecture or its ``state_dict``. Where the model has
    batch norm and ``settings.recompute_bn`` is on, the statistics at each point are
    re-estimated on the training split (interpolating them would mismatch the weights).
    Both ends are left as they were. ``settings`` that do not name ``dims`` mean a line
    (``dims: 1``). ``loss`` is the measured loss, as :func:`landscape`'s.
    """
    if settings is None or (isinstance(settings, Mapping) and "dims" not in settings):
        settings = {**(settings or {}), "dims": 1}  # a line, whatever landscapes default to
    cfg = as_section(LandscapeConfig, settings, "landscape.")
    if cfg.dims != 1:
        raise ConfigError(f"landscape.dims must be 1 for an interpolation; got {cfg.dims}.")
    split = seeded_subset(choose_split(data, cfg.split), cfg.subset, cfg.seed)
    if len(split) == 0:
        raise DataError(f"landscape.split must hold examples; got an empty {cfg.split!r} split.")
    device = model_device(model)
    split = split.to(device)
    bn_split = choose_split(data, "train").to(device)
    task = task if task is not None or not isinstance(data, DataBundle) else data.task
    classification = classification_of(split, task)
    measured = measured_loss(loss, split, task, f"data.{cfg.split}")
    names = [n for n, _ in trainable_parameters(model)]
    start = weights_by_name(model, names, "model")
    end = weights_by_name(other, names, "other")
    for n in names:
        if start[n].shape != end[n].shape:
            raise ModelError(
                f"other must have the model's architecture; parameter {n!r} has shape "
                f"{tuple(end[n].shape)}, the model's {tuple(start[n].shape)}."
            )
    has_bn = any(isinstance(m, BATCH_NORM) for m in model.modules())
    alphas, _ = _grid(cfg)
    t0 = time.perf_counter()
    losses = np.full(len(alphas), np.nan)
    errors = np.full(len(alphas), np.nan)
    with preserved(model):
        model.eval()
        params = [p for _, p in trainable_parameters(model)]
        ev = Evaluator(
            model, split, classification=classification, batch_size=cfg.eval_batch_size,
            batch_points=1, loss=measured,
        )  # fmt: skip
        bar = _bar(progress, len(alphas), 0)
        try:
            for i, a in enumerate(alphas):
                with torch.no_grad():
                    for p, n in zip(params, names, strict=True):
                        p.copy_(torch.lerp(start[n].to(p), end[n].to(p), float(a)))
                if has_bn and cfg.recompute_bn:
                    generator = torch.Generator().manual_seed(cfg.seed)
                    recompute_batch_norm(model, bn_split, generator=generator)
                losses[i], errors[i] = ev._one()
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    surface = Surface(
        f"{cfg.split} ({len(split)} examples)", len(split), losses,
        errors if classification else None,
    )  # fmt: skip
    direction = [(end[n] - start[n]).detach().cpu() for n in names]
    return LandscapeResult(
        dims=1,
        direction=cfg.direction if cfg.direction in ("init", "run") else "run",
        alphas=alphas,
        betas=None,
        surface=surface,
        batches=[],
        split=cfg.split,
        settings=cfg,
        seconds=time.perf_counter() - t0,
        evaluations=len(alphas),
        labels=labels,
        directions=[direction],
    )
