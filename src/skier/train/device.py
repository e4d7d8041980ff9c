"""Which torch device a run uses: a leaf module, imported by the loop, the process groups and
the diagnostics alike."""

from __future__ import annotations

import torch

from skier.errors import ConfigError, problem

__all__ = ["resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``auto`` is the first CUDA device when there is one, else the CPU.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            problem("train.device", "an available device", name, "No CUDA device: use 'cpu'.")
        )
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(problem("train.device", "an available device", name, "Use 'cpu'."))
    return torch.device(name)
