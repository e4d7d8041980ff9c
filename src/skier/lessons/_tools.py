"""Small shared pieces of the lessons: the data, models and figures most of them use."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from skier.config import DataConfig, ModelConfig
from skier.data import DataBundle, Split, load_data
from skier.models import build_model
from skier.plots import new_figure

__all__ = ["axes", "digits", "mlp", "noisy_labels"]


@lru_cache(maxsize=4)
def _digits(as_images: bool, standardize: bool) -> DataBundle:
    return load_data(DataConfig(as_images=as_images, standardize=standardize))


def digits(*, as_images: bool = False, standardize: bool = True) -> DataBundle:
    """scikit-learn's 8x8 digits, split 60/20/20 (stratified, seed 0), loaded once."""
    return _digits(as_images, standardize)


def mlp(
    data: DataBundle, hidden: list[int] | None = None, *, seed: int, **settings: Any
) -> torch.nn.Module:
    """An MLP for ``data``, initialised from ``seed`` (``settings``: any ModelConfig field)."""
    torch.manual_seed(seed)
    config = ModelConfig(hidden_sizes=hidden or [64, 64], **settings)
    return build_model(config, input_shape=data.input_shape, output_size=data.output_size)


def noisy_labels(split: Split, share: float, seed: int) -> Split:
    """``split`` with about ``share`` of its labels replaced by random classes (seeded): wrong
    labels that a big net can only memorize."""
    generator = torch.Generator().manual_seed(seed + 1000)
    targets = split.targets.clone()
    flip = torch.rand(len(targets), generator=generator) < share
    targets[flip] = torch.randint(10, (int(flip.sum()),), generator=generator)
    return Split(split.inputs, targets)


def axes(columns: int = 1, *, width: float = 5.0, height: float = 3.8) -> tuple[Figure, list[Axes]]:
    """A figure with ``columns`` panels side by side."""
    fig = new_figure(width * columns, height)
    found = fig.subplots(1, columns)
    return fig, list(found) if columns > 1 else [found]
