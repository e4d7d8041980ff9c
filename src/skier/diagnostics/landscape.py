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
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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
    model_device,
    norm,
    preserved,
    seeded_subset,
    trainable_parameters,
)
from skier.diagnostics._evaluate import BATCH_NORM, Evaluator, recompute_batch_norm
from skier.errors import ConfigError, DataError, ModelError

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

# --- directions ----------------------------------------------------------------------------------


def normalize_direction(
    direction: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor],
    *,
    normalization: Literal["filter", "layer", "none"] = "filter",
    ignore: Literal["biasbn", "none"] = "biasbn",
) -> ParamList:
    """``direction`` rescaled to the scale of ``weights`` (one tensor per parameter).

    ``filter``: every slice along dim 0 gets the norm of the matching weight slice (for a 1-D
    tensor each element is a slice). ``layer``: every tensor gets the norm of its weights.
    ``ignore="biasbn"`` zeroes 1-D tensors (biases, batch-norm scales and shifts).

    >>> w = [torch.ones(2, 3), torch.ones(2)]
    >>> d = normalize_direction([torch.randn(2, 3), torch.randn(2)], w)
    >>> [round(float(r.norm()), 4) for r in d[0]], float(d[1].abs().sum())
    ([1.7321, 1.7321], 0.0)
    """
    out: ParamList = []
    for d, w in zip(direction, weights, strict=True):
        d = d.detach().clone()
        if d.dim() <= 1 and ignore == "biasbn":
            d.zero_()
        elif normalization == "filter":
            d2 = d.reshape(d.shape[0], -1) if d.dim() > 0 else d.reshape(1, 1)
            w2 = w.detach().reshape(d2.shape)
            scale = w2.norm(dim=1, keepdim=True) / (d2.norm(dim=1, keepdim=True) + 1e-10)
            d = (d2 * scale).reshape(d.shape)
        elif normalization == "layer":
            d = d * (w.detach().norm() / (d.norm() + 1e-10))
        out.append(d)
    return out


def random_direction(
    model: nn.Module,
    *,
    normalization: Literal["filter", "layer", "none"] = "filter",
    ignore: Literal["biasbn", "none"] = "biasbn",
    generator: torch.Generator | None = None,
) -> ParamList:
    """A Gaussian direction over the trainable parameters, normalized as the paper does.

    Drawn on the CPU from ``generator`` (so a seed gives the same direction on every device),
    then moved to the parameters' device.
    """
    params = [p for _, p in trainable_parameters(model)]
    raw = [
        torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p.device, p.dtype)
        for p in params
    ]
    return normalize_direction(raw, params, normalization=normalization, ignore=ignore)


def direction_between(
    start: Mapping[str, torch.Tensor] | nn.Module,
    end: Mapping[str, torch.Tensor] | nn.Module,
    model: nn.Module,
) -> ParamList:
    """``end - start`` over ``model``'s trainable parameters (state dicts or models)."""
    names = [n for n, _ in trainable_parameters(model)]
    a = _weights_by_name(start, names, "start")
    b = _weights_by_name(end, names, "end")
    reference = dict(model.named_parameters())
    return [
        (b[n] - a[n]).to(reference[n].device, reference[n].dtype).detach().clone() for n in names
    ]


def _weights_by_name(
    source: Mapping[str, torch.Tensor] | nn.Module, names: Sequence[str], what: str
) -> dict[str, torch.Tensor]:
    found = dict(source.state_dict()) if isinstance(source, nn.Module) else dict(source)
    missing = [n for n in names if n not in found]
    if missing:
        raise ModelError(
            f"{what} weights must have every parameter of the model; got none for "
            f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}. "
            "Both ends need the same architecture (same config.model)."
        )
    return {n: found[n].detach().clone() for n in names}


def _scaled_to(direction: ParamList, weights: Sequence[torch.Tensor]) -> ParamList:
    """``direction`` scaled so that its overall norm equals that of ``weights``."""
    factor = norm(list(weights)) / (norm(direction) + 1e-12)
    return [d * factor for d in direction]


# --- results -------------------------------------------------------------------------------------


@dataclass
class Surface:
    """Loss (and error) on the grid for one data set: shape ``(points,)`` for a curve,
    ``(points_y, points)`` for a surface (rows are β, columns α)."""

    name: str
    examples: int
    loss: np.ndarray
    error: np.ndarray | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "examples": self.examples,
            "loss": _json_array(self.loss),
            "error": None if self.error is None else _json_array(self.error),
        }


def _json_array(values: np.ndarray) -> Any:
    return np.where(np.isfinite(values), values, np.nan).astype(object).tolist()


@dataclass
class LandscapeResult:
    """What :func:`landscape` and :func:`interpolate` measured.

    ``surface`` is the landscape on the measured split; ``batches`` the same plane on single
    mini-batches (``per_batch``). ``minimum`` is the lowest loss point of ``surface``.
    """

    dims: int
    direction: str
    alphas: np.ndarray
    betas: np.ndarray | None
    surface: Surface
    batches: list[Surface]
    split: str
    settings: LandscapeConfig
    seconds: float
    evaluations: int
    labels: tuple[str, str] | None = None  # the two ends of an interpolation (α = 0, α = 1)
    batched_points: int = 1
    directions: list[ParamList] = field(default_factory=list, repr=False)

    @property
    def loss(self) -> np.ndarray:
        return self.surface.loss

    @property
    def error(self) -> np.ndarray | None:
        return self.surface.error

    @property
    def minimum(self) -> dict[str, float]:
        """``alpha`` (``beta``) and ``loss`` of the lowest finite point."""
        values = np.where(np.isfinite(self.loss), self.loss, np.inf)
        flat = int(np.argmin(values))
        if self.dims == 1:
            return {"alpha": float(self.alphas[flat]), "loss": float(values[flat])}
        row, col = np.unravel_index(flat, values.shape)
        assert self.betas is not None
        return {
            "alpha": float(self.alphas[col]),
            "beta": float(self.betas[row]),
            "loss": float(values[row, col]),
        }

    @property
    def center_loss(self) -> float | None:
        """The loss at α = 0 (β = 0) when that point is on the grid: the model itself."""
        col = np.flatnonzero(np.isclose(self.alphas, 0.0, atol=1e-12))
        if col.size == 0:
            return None
        if self.dims == 1:
            return float(self.loss[col[0]])
        assert self.betas is not None
        row = np.flatnonzero(np.isclose(self.betas, 0.0, atol=1e-12))
        return None if row.size == 0 else float(self.loss[row[0], col[0]])

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary and values (no tensors)."""
        return {
            "dims": self.dims,
            "direction": self.direction,
            "alphas": self.alphas.tolist(),
            "betas": None if self.betas is None else self.betas.tolist(),
            "surface": self.surface.to_dict(),
            "batches": [b.to_dict() for b in self.batches],
            "split": self.split,
            "labels": list(self.labels) if self.labels else None,
            "minimum": self.minimum,
            "center_loss": self.center_loss,
            "settings": self.settings.model_dump(mode="json"),
            "seconds": self.seconds,
            "evaluations": self.evaluations,
            "batched_points": self.batched_points,
        }

    def to_csv(self) -> str:
        """One row per grid point: ``alpha[,beta],loss[,error]`` (and per-batch losses)."""
        head = ["alpha"] + (["beta"] if self.dims == 2 else []) + ["loss"]
        head += ["error"] if self.error is not None else []
        head += [f"batch{i + 1}_loss" for i in range(len(self.batches))]
        lines = [",".join(head)]
        for index in np.ndindex(self.loss.shape):
            if self.dims == 1:
                row = [self.alphas[index[0]]]
            else:
                assert self.betas is not None
                row = [self.alphas[index[1]], self.betas[index[0]]]
            row.append(self.loss[index])
            if self.error is not None:
                row.append(self.error[index])
            row += [b.loss[index] for b in self.batches]
            lines.append(",".join(repr(float(v)) for v in row))
        return "\n".join(lines) + "\n"


# --- evaluation ----------------------------------------------------------------------------------


# --- the diagnostics -----------------------------------------------------------------------------


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


PartialCallback = Callable[[dict[str, Any]], None]


def landscape(
    model: nn.Module,
    data: DataBundle | Split | tuple[Any, Any],
    settings: LandscapeConfig | Mapping[str, Any] | None = None,
    *,
    directions: Sequence[ParamList] | None = None,
    task: str | None = None,
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
    classification = classification_of(split, task)
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
        dirs = list(directions) if directions is not None else _make_directions(model, cfg, data)
        if directions is not None:
            _check_shapes(dirs, base)
        return _sweep(
            model, split, cfg, base, dirs, batches, classification, batch_points, progress,
            resume, on_row, fingerprint(model, cfg),
        )  # fmt: skip


def default_batch_points(model: nn.Module) -> int:
    """Grid points per forward pass: several for small models without batch norm, where one
    vmap'd pass beats a Python loop over points (bench/bench_landscape.py), else one."""
    if any(isinstance(m, BATCH_NORM) for m in model.modules()):
        return 1
    size = sum(p.numel() for p in model.parameters())
    return 8 if size <= 200_000 else 1


def _check_shapes(dirs: Sequence[ParamList], base: ParamList) -> None:
    for d in dirs:
        shapes = [tuple(t.shape) for t in d]
        if shapes != [tuple(b.shape) for b in base]:
            raise ModelError(
                "directions must match the model's trainable parameters tensor by tensor; got "
                f"{len(shapes)} tensors that differ from the model's {len(base)}."
            )


def _make_directions(
    model: nn.Module, cfg: LandscapeConfig, data: DataBundle | Split | tuple[Any, Any]
) -> list[ParamList]:
    if cfg.direction == "hessian":
        from skier.config.diagnostics import SharpnessConfig
        from skier.diagnostics.sharpness import sharpness

        found = sharpness(
            model,
            data,
            settings=SharpnessConfig(
                top_k=cfg.dims, split=cfg.split, subset=cfg.subset, seed=cfg.seed, trace=False
            ),
        )
        weights = [p.detach() for _, p in trainable_parameters(model)]
        return [
            _scaled_to(
                [v.to(w.device, w.dtype) for v, w in zip(vec, weights, strict=True)], weights
            )
            for vec in found.eigenvectors
        ]
    generator = torch.Generator().manual_seed(cfg.seed)
    return [
        random_direction(
            model, normalization=cfg.normalization, ignore=cfg.ignore, generator=generator
        )
        for _ in range(cfg.dims)
    ]


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
    bar = _bar(progress, rows * len(alphas), done_rows * len(alphas))
    evaluations = 0
    try:
        for row in range(done_rows, rows):
            beta = 0.0 if betas is None else float(betas[row])
            weights = [_point(base, dirs, float(a), beta) for a in alphas]
            for i, ev in enumerate(evaluators):
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


def _point(base: ParamList, dirs: Sequence[ParamList], alpha: float, beta: float) -> ParamList:
    if len(dirs) == 1:
        return [b + alpha * d for b, d in zip(base, dirs[0], strict=True)]
    return [b + alpha * d + beta * e for b, d, e in zip(base, dirs[0], dirs[1], strict=True)]


def _bar(progress: bool, total: int, initial: int) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="landscape", unit="pt", leave=False)


def interpolate(
    model: nn.Module,
    other: Mapping[str, torch.Tensor] | nn.Module,
    data: DataBundle | Split | tuple[Any, Any],
    settings: LandscapeConfig | Mapping[str, Any] | None = None,
    *,
    task: str | None = None,
    labels: tuple[str, str] = ("this model", "other model"),
    progress: bool = False,
) -> LandscapeResult:
    """Loss and error on the straight line from ``model`` (α = 0) to ``other`` (α = 1).

    ``other`` is a model of the same architecture or its ``state_dict``. Where the model has
    batch norm and ``settings.recompute_bn`` is on, the statistics at each point are
    re-estimated on the training split (interpolating them would mismatch the weights).
    Both ends are left as they were.
    """
    cfg = as_section(LandscapeConfig, settings, "landscape.")
    if cfg.dims != 1:
        raise ConfigError(f"landscape.dims must be 1 for an interpolation; got {cfg.dims}.")
    split = seeded_subset(choose_split(data, cfg.split), cfg.subset, cfg.seed)
    if len(split) == 0:
        raise DataError(f"landscape.split must hold examples; got an empty {cfg.split!r} split.")
    device = model_device(model)
    split = split.to(device)
    bn_split = choose_split(data, "train").to(device)
    classification = classification_of(split, task)
    names = [n for n, _ in trainable_parameters(model)]
    start = _weights_by_name(model, names, "model")
    end = _weights_by_name(other, names, "other")
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
            batch_points=1,
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
