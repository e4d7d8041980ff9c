"""A small convolutional net for images such as 8x8 digits or 28x28 MNIST."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from skier.errors import ModelError, problem
from skier.models.blocks import activation as make_activation
from skier.models.blocks import check_common, check_sizes, is_count
from skier.models.mlp import MLP

__all__ = ["CNN"]


class CNN(nn.Module):
    """Conv blocks → flatten → :class:`MLP` head.

    Each conv block is ``Conv2d(kernel_size, padding=kernel_size // 2) → (BatchNorm2d) →
    activation``, so the convolution keeps the spatial size (hence ``kernel_size`` must be odd),
    followed by a 2x2 max-pool when the result would still be at least 2x2: an 8x8 input with
    two blocks goes 8 → 4 → 2, a 28x28 one 28 → 14 → 7, and a third block on 8x8 does not pool.
    ``dropout`` applies to the dense head only; ``hidden_sizes`` are its hidden widths.

    ``forward`` takes ``N x C x H x W`` or anything with ``C*H*W`` features per example (e.g. the
    flat ``N x 64`` digits), which it reshapes to ``N x C x H x W`` in row-major (C, H, W) order —
    the order ``torch.flatten`` produces.

    >>> model = CNN((1, 8, 8), 10)
    >>> model(torch.zeros(5, 64)).shape
    torch.Size([5, 10])
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 8, 8),
        output_size: int = 10,
        channels: Sequence[int] = (16, 32),
        kernel_size: int = 3,
        activation: str = "relu",
        batch_norm: bool = False,
        dropout: float = 0.0,
        hidden_sizes: Sequence[int] = (128,),
    ) -> None:
        super().__init__()
        problems = []
        shape_ok = (
            isinstance(input_shape, Sequence)
            and len(input_shape) == 3
            and all(is_count(s) for s in input_shape)
        )
        if not shape_ok:
            problems.append(
                problem(
                    "input_shape",
                    "three positive integers (channels, height, width)",
                    input_shape,
                    "For flat 8x8 digits use (1, 8, 8).",
                )
            )
        if not is_count(output_size):
            problems.append(problem("output_size", "a positive integer", output_size))
        problems += check_sizes("channels", channels, allow_empty=False)
        if not is_count(kernel_size) or kernel_size % 2 == 0:
            problems.append(
                problem(
                    "kernel_size",
                    "an odd positive integer",
                    kernel_size,
                    "Padding keeps the image size only for odd kernels; try 3 or 5.",
                )
            )
        problems += check_sizes("hidden_sizes", hidden_sizes)
        problems += check_common(activation, dropout)
        if problems:
            raise ModelError(problems)

        self.input_shape: tuple[int, int, int] = (input_shape[0], input_shape[1], input_shape[2])
        self.output_size = output_size
        in_channels, height, width = self.input_shape
        layers: list[nn.Module] = []
        for out_channels in channels:
            # A bias right before batch norm is cancelled by its mean subtraction: leave it out.
            conv = nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                padding=kernel_size // 2,
                bias=not batch_norm,
            )
            layers.append(conv)
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(make_activation(activation))
            # Pool only while the result stays at least 2x2: pooling a 3x3 or smaller map would
            # throw away most of what the conv layers found.
            if height // 2 >= 2 and width // 2 >= 2:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.feature_shape = (in_channels, height, width)
        self.head = MLP(
            in_channels * height * width,
            output_size,
            hidden_sizes,
            activation,
            batch_norm=batch_norm,
            dropout=dropout,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            x = self._as_images(x)
        return self.head(self.features(x))

    def _as_images(self, x: torch.Tensor) -> torch.Tensor:
        channels, height, width = self.input_shape
        if x.dim() >= 2 and x.shape[1:].numel() == channels * height * width:
            return x.reshape(x.shape[0], channels, height, width)
        raise ModelError(
            problem(
                "CNN input",
                f"N x {channels} x {height} x {width} or N x {channels * height * width}",
                tuple(x.shape),
                "Build the CNN with the data's input_shape.",
            )
        )
