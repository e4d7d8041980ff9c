"""``train.compile``: ``torch.compile`` of the module that trains.

Only the training forward pass (and, through AOTAutograd, its backward) is compiled. The
caller's module is never replaced: checkpoints, evaluation, callbacks, diagnostics and
``FitResult.model`` all see the plain module, so a checkpoint holds its own ``state_dict`` (no
``_orig_mod.`` prefixes) and a run written with compile resumes without it, and the other way
round. Under DDP the DDP wrapper is compiled (torch's recommended order: its optimizer splits
the graph at the gradient buckets).

What cannot work is found at set-up (:func:`compile_problems`), before anything changes; a
compiler failure while the first step traces is turned into one line naming ``train.compile``
(:func:`compile_failure`).

>>> compile_mode(True), compile_mode(False), compile_mode("max-autotune")
('default', None, 'max-autotune')
"""

from __future__ import annotations

import sys
from typing import Literal

import torch

from skier.errors import ConfigError, problem

__all__ = ["compile_failure", "compile_mode", "compile_module", "compile_problems", "uncompiled"]

Compile = bool | Literal["default", "reduce-overhead", "max-autotune"]

_OFF = "Set train.compile: false (fit(..., compile=False)) to train without it."


def compile_mode(compile: Compile) -> str | None:
    """torch.compile's ``mode`` for a ``train.compile`` value (``None``: not compiled)."""
    if compile is False:
        return None
    return "default" if compile is True else compile


def compile_problems(compile: Compile, device: torch.device) -> list[str]:
    """Why ``train.compile`` cannot work here, one line each (empty: it can, or it is off)."""
    if compile is False:
        return []
    import torch._dynamo  # only when asked: it is slow to import

    if not torch._dynamo.is_dynamo_supported():
        version = ".".join(map(str, sys.version_info[:2]))
        return [
            problem("train.compile", f"false on Python {version}", compile,
                    f"torch {torch.__version__} cannot compile on this Python. {_OFF}")
        ]  # fmt: skip
    if device.type == "cpu":
        from torch._inductor.cpp_builder import get_cpp_compiler

        try:
            get_cpp_compiler()
        except (RuntimeError, OSError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return [
                problem("train.compile", "false on the CPU without a C++ compiler", compile,
                        f"torch.compile builds C++ kernels on the CPU and found no compiler "
                        f"({reason[:120]}): install g++ (or clang++). {_OFF}")
            ]  # fmt: skip
    return []


def compile_module(module: torch.nn.Module, compile: Compile) -> torch.nn.Module:
    """``module`` compiled as ``train.compile`` asks, or ``module`` itself when it is off.
    Compiling is lazy: the work happens on the first forward pass."""
    mode = compile_mode(compile)
    if mode is None:
        return module
    return torch.compile(module, mode=mode)  # type: ignore[return-value]


def uncompiled(module: torch.nn.Module) -> torch.nn.Module:
    """The module a compiled one wraps (its ``_orig_mod``); any other module as it is."""
    inner = getattr(module, "_orig_mod", None)
    return inner if isinstance(inner, torch.nn.Module) else module


def compile_failure(exc: BaseException, compile: Compile) -> ConfigError | None:
    """One line naming ``train.compile`` for an error torch.compile raised while it traced or
    built the first step (``None``: ``exc`` is no compiler error, or compiling was off)."""
    if compile is False:
        return None
    dynamo = sys.modules.get("torch._dynamo.exc")
    inductor = sys.modules.get("torch._inductor.exc")
    kinds = tuple(
        k
        for k in (
            getattr(dynamo, "TorchDynamoException", None),
            getattr(dynamo, "BackendCompilerFailed", None),
            getattr(inductor, "InvalidCxxCompiler", None),
            getattr(inductor, "CppCompileError", None),
        )
        if isinstance(k, type)
    )
    if not kinds or not isinstance(exc, kinds):
        return None
    lines = [x.strip() for x in str(exc).strip().splitlines() if x.strip()]
    reason = lines[0][:200] if lines else type(exc).__name__
    return ConfigError(
        f"train.compile failed: torch.compile could not compile this model "
        f"({type(exc).__name__}: {reason}). {_OFF}"
    )
