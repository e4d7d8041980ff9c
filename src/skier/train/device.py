"""Which torch device a run uses, and in which precision it computes: a leaf module, imported by
the loop, the process groups and the diagnostics alike."""

from __future__ import annotations

from typing import Literal

import torch

from skier.errors import ConfigError, problem

__all__ = ["amp_dtype", "amp_problems", "resolve_device"]

Amp = bool | Literal["fp16", "bf16"]


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


def amp_problems(amp: Amp, device: torch.device) -> list[str]:
    """Why ``train.amp`` cannot run on ``device``, one line each (empty: it can).

    >>> print(amp_problems("fp16", torch.device("cpu"))[0].partition(". ")[0])
    train.amp must be true, 'bf16' or false on the CPU; got 'fp16'

    """
    if amp is False:
        return []
    if device.type == "cpu" and amp == "fp16":
        return [
            problem("train.amp", "true, 'bf16' or false on the CPU", amp,
                    "float16 autocast needs loss scaling and is slow on CPUs; use 'bf16' "
                    "(what true means on the CPU), or train on CUDA.")
        ]  # fmt: skip
    if device.type == "cuda" and amp == "bf16" and not torch.cuda.is_bf16_supported():
        return [
            problem("train.amp", "true, 'fp16' or false on this GPU (no bfloat16)", amp,
                    "Use true: float16 with loss scaling.")
        ]  # fmt: skip
    if device.type not in ("cpu", "cuda"):
        return [
            problem("train.amp", f"false on {device.type}", amp,
                    "Mixed precision runs on CUDA and the CPU only: turn it off, or train there.")
        ]  # fmt: skip
    return []


def amp_dtype(amp: Amp, device: torch.device) -> torch.dtype | None:
    """The autocast precision of ``train.amp`` on ``device`` (``None``: full precision).

    ``true`` is the device's natural choice: float16 (with a gradient scaler) on CUDA, bfloat16
    on the CPU (float16 on CPUs is slow and needs loss scaling; :func:`amp_problems` refuses it).
    float16 alone needs the gradient scaler: its narrow range flushes small gradients to zero.

    >>> amp_dtype(True, torch.device("cpu")), amp_dtype(False, torch.device("cpu"))
    (torch.bfloat16, None)
    """
    if amp is False:
        return None
    if amp == "bf16" or (amp is True and device.type == "cpu"):
        return torch.bfloat16
    return torch.float16
