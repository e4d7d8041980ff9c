"""Check, before training, that a model's output fits the data."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from skier.errors import ModelError, problem
from skier.models.blocks import is_count

__all__ = ["check_output_shape"]

Shape = Sequence[int]


def check_output_shape(
    model: nn.Module,
    input_shapes: Shape | Sequence[Shape],
    output_size: int,
    *,
    categorical_cardinalities: Sequence[int] = (),
    batch: int = 4,
    device: torch.device | str | None = None,
) -> None:
    """Run one batch of noise through ``model`` and require an output of ``(batch, output_size)``.

    ``input_shapes`` is the shape of one example of each float input (no batch dimension), or a
    single shape when there is one input. When ``categorical_cardinalities`` is non-empty, a long
    ``batch x len(categorical_cardinalities)`` input of valid codes is passed after the float
    inputs, as :class:`~skier.data.Split` lays them out. The output must be exactly
    ``(batch, output_size)`` — also ``(batch, 1)``, not ``(batch,)``, for one regression target —
    so that the loss never broadcasts silently.

    The model runs in eval mode under ``torch.no_grad()`` so parameters and batch-norm running
    statistics do not change; each module's train/eval flag and the torch RNG states (CPU and
    CUDA) are restored afterwards, so a seeded run draws the same numbers with or without this
    check. ``device`` defaults to the device of the model's first parameter (CPU if none).

    Raises :class:`ModelError` when the forward pass fails or the output has the wrong shape.

    >>> from skier.models import MLP
    >>> check_output_shape(MLP(64, 10), (1, 8, 8), 10)
    >>> check_output_shape(MLP(64, 12), (64,), 10)
    Traceback (most recent call last):
    ...
    skier.errors.ModelError: model output must have shape (batch, 10) for output_size 10; got \
(4, 12). Make the last layer produce 10 outputs.
    """
    shapes = _as_shape_list(input_shapes)
    problems = []
    if not is_count(output_size):
        problems.append(problem("output_size", "a positive integer", output_size))
    if not is_count(batch):
        problems.append(problem("batch", "a positive integer", batch))
    bad_cards = [c for c in categorical_cardinalities if not is_count(c)]
    if bad_cards:
        problems.append(
            problem(
                "categorical_cardinalities",
                "positive integers",
                list(categorical_cardinalities),
            )
        )
    if shapes is None:
        problems.append(
            problem("input_shapes", "a shape such as (64,) or a list of shapes", input_shapes)
        )
    if problems or shapes is None:
        raise ModelError(problems)

    param: torch.Tensor | None = next(iter(model.parameters()), None)
    if param is None:
        param = next(iter(model.buffers()), None)
    target = torch.device(device) if device is not None else _device_of(param)
    # Float inputs match the model's dtype so a float64 model is checked as it will be trained.
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32

    with _preserved(model):
        # A private generator keeps the noise itself off the global RNG stream; the model may
        # still draw from it in forward, which _preserved undoes.
        gen = torch.Generator().manual_seed(0)
        inputs = [torch.randn(batch, *s, generator=gen, dtype=dtype).to(target) for s in shapes]
        if categorical_cardinalities:
            codes = [
                torch.randint(0, c, (batch,), generator=gen) for c in categorical_cardinalities
            ]
            inputs.append(torch.stack(codes, dim=1).to(target))
        fed = ("input of shape " if len(inputs) == 1 else "inputs of shapes ") + ", ".join(
            str(tuple(t.shape)) for t in inputs
        )
        try:
            with torch.no_grad():
                output = model(*inputs)
        except Exception as exc:  # any failure in user code becomes one clear message
            raise ModelError(
                f"model forward failed on {fed}: {type(exc).__name__}: {exc}. "
                "Check that the model was built for the data's input shape."
            ) from exc

    expected = (batch, output_size)
    if not isinstance(output, torch.Tensor):
        raise ModelError(
            f"model output must be a tensor of shape (batch, {output_size}); got "
            f"{type(output).__name__}. Return the logits (or values) as one tensor."
        )
    got = tuple(output.shape)
    if got != expected:
        raise ModelError(
            f"model output must have shape (batch, {output_size}) for output_size "
            f"{output_size}; got {got}. {_hint(got, expected)}"
        )


def _as_shape_list(input_shapes: Shape | Sequence[Shape]) -> list[tuple[int, ...]] | None:
    """``(64,)`` → ``[(64,)]``; ``[(3,), (2,)]`` stays; ``None`` when it is neither."""
    if not isinstance(input_shapes, Sequence) or isinstance(input_shapes, (str, bytes)):
        return None
    items = list(input_shapes)
    if all(is_count(d, minimum=0) for d in items):
        return [tuple(d for d in items if isinstance(d, int))]
    out = []
    for s in items:
        if not isinstance(s, Sequence) or not all(is_count(d, minimum=0) for d in s):
            return None
        out.append(tuple(s))
    return out


def _device_of(param: torch.Tensor | None) -> torch.device:
    return param.device if param is not None else torch.device("cpu")


def _hint(got: tuple[int, ...], expected: tuple[int, int]) -> str:
    batch, size = expected
    if got == (batch,) and size == 1:
        return (
            "Keep the output dimension: return shape (batch, 1), e.g. do not squeeze the "
            "last layer's output."
        )
    if not got or got[0] != batch:
        return f"Keep the batch dimension first; the check fed {batch} examples."
    return f"Make the last layer produce {size} outputs."


@contextmanager
def _preserved(model: nn.Module) -> Iterator[None]:
    """Eval mode inside; every module's train flag and the torch RNG states restored after."""
    modes = [(m, m.training) for m in model.modules()]
    cpu_state = torch.get_rng_state()
    # Only touch CUDA state when CUDA is already in use: querying it would initialise CUDA.
    cuda_states = (
        torch.cuda.get_rng_state_all()
        if torch.cuda.is_available() and torch.cuda.is_initialized()
        else None
    )
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
        torch.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
