"""The directions a loss landscape moves the weights along: filter-normalized random ones
(Li et al. 2018), the Hessian's top eigenvectors, or the line between two sets of weights.

>>> torch.manual_seed(0) and None
>>> model = nn.Linear(3, 2)
>>> [tuple(d.shape) for d in random_direction(model)]
[(2, 3), (2,)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from skier.config.diagnostics import LandscapeConfig
from skier.data.types import DataBundle, Split
from skier.diagnostics._common import ParamList, norm, trainable_parameters
from skier.errors import ModelError

__all__ = ["direction_between", "make_directions", "normalize_direction", "random_direction"]


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
    a = weights_by_name(start, names, "start")
    b = weights_by_name(end, names, "end")
    reference = dict(model.named_parameters())
    return [
        (b[n] - a[n]).to(reference[n].device, reference[n].dtype).detach().clone() for n in names
    ]


def weights_by_name(
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


def scaled_to(direction: ParamList, weights: Sequence[torch.Tensor]) -> ParamList:
    """``direction`` scaled so that its overall norm equals that of ``weights``."""
    factor = norm(list(weights)) / (norm(direction) + 1e-12)
    return [d * factor for d in direction]


def check_shapes(dirs: Sequence[ParamList], base: ParamList) -> None:
    for d in dirs:
        shapes = [tuple(t.shape) for t in d]
        if shapes != [tuple(b.shape) for b in base]:
            raise ModelError(
                "directions must match the model's trainable parameters tensor by tensor; got "
                f"{len(shapes)} tensors that differ from the model's {len(base)}."
            )


def make_directions(
    model: nn.Module,
    cfg: LandscapeConfig,
    data: DataBundle | Split | tuple[Any, Any],
    *,
    task: str | None = None,
    loss: Any = None,
) -> list[ParamList]:
    """``cfg.dims`` directions: random ones, or the top Hessian eigenvectors of ``loss`` (the
    measured loss, see :func:`skier.diagnostics.sharpness`)."""
    if cfg.direction == "hessian":
        from skier.config.diagnostics import SharpnessConfig
        from skier.diagnostics.sharpness import sharpness

        found = sharpness(
            model,
            data,
            settings=SharpnessConfig(
                top_k=cfg.dims, split=cfg.split, subset=cfg.subset, seed=cfg.seed, trace=False
            ),
            task=task,
            loss=loss,
        )
        weights = [p.detach() for _, p in trainable_parameters(model)]
        return [
            scaled_to([v.to(w.device, w.dtype) for v, w in zip(vec, weights, strict=True)], weights)
            for vec in found.eigenvectors
        ]
    generator = torch.Generator().manual_seed(cfg.seed)
    return [
        random_direction(
            model, normalization=cfg.normalization, ignore=cfg.ignore, generator=generator
        )
        for _ in range(cfg.dims)
    ]
