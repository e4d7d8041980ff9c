"""Build a model from a :class:`~skier.config.ModelConfig` and the data's plain shapes.

Models never import :mod:`skier.data` (a sibling layer), so the caller passes the shapes::

    model = build_model(config.model, input_shape=data.input_shape,
                        output_size=data.num_classes or data.num_targets,
                        categorical_cardinalities=data.categorical_cardinalities)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from skier._references import resolve_reference
from skier.config import ModelConfig
from skier.errors import ModelError, SkierError, did_you_mean, problem
from skier.models.blocks import is_count
from skier.models.cnn import CNN
from skier.models.mlp import MLP
from skier.models.tabular import TabularNet

__all__ = ["build_from_factory", "build_model", "count_parameters"]

BUILT_IN = ("mlp", "cnn", "tabular")


def build_model(
    config: ModelConfig,
    *,
    input_shape: Sequence[int],
    output_size: int,
    categorical_cardinalities: Sequence[int] = (),
    num_numeric: int | None = None,
) -> nn.Module:
    """Build the network ``config.name`` names for inputs of ``input_shape`` (no batch dim).

    - ``"mlp"``: :class:`MLP` on the flattened input. When ``categorical_cardinalities`` is
      non-empty it builds a :class:`TabularNet` instead, since a plain MLP cannot take the
      categorical codes (an MLP is a TabularNet without embeddings).
    - ``"tabular"``: :class:`TabularNet` with ``num_numeric`` numeric inputs (default: the
      number of features in ``input_shape``).
    - ``"cnn"``: :class:`CNN`; ``input_shape`` must be ``C x H x W``, ``H x W`` (one channel) or a
      flat size that is a perfect square (one square channel, e.g. 64 → 1 x 8 x 8).
    - ``"package.module:function"``: imports the module and calls the function (or class) with
      ``**config.kwargs``, adding ``input_shape``, ``output_size`` and
      ``categorical_cardinalities`` for each of them it accepts by name (all but the last
      also through ``**kwargs``) and ``config.kwargs`` does not already set.

    Raises :class:`ModelError` when the model cannot be built.

    >>> model = build_model(ModelConfig(hidden_sizes=[32]), input_shape=(64,), output_size=10)
    >>> count_parameters(model)
    2410
    """
    problems = []
    shape_ok = (
        isinstance(input_shape, Sequence)
        and not isinstance(input_shape, (str, bytes))
        and all(is_count(d, minimum=0) for d in input_shape)
    )
    if not shape_ok:
        problems.append(problem("input_shape", "a sequence of non-negative integers", input_shape))
    if not is_count(output_size):
        problems.append(problem("output_size", "a positive integer", output_size))
    if problems:
        raise ModelError(problems)
    shape = tuple(input_shape)
    cardinalities = tuple(categorical_cardinalities)
    name = config.name

    if ":" in name:
        return _from_reference(config, shape, output_size, cardinalities)
    if name == "tabular" or (name == "mlp" and cardinalities):
        features = math.prod(shape)
        if num_numeric is not None and num_numeric != features:
            raise ModelError(
                problem(
                    "num_numeric",
                    f"the number of numeric features in input_shape {shape} ({features})",
                    num_numeric,
                )
            )
        return TabularNet(
            features,
            cardinalities,
            output_size,
            embedding_sizes=config.embedding_sizes,
            hidden_sizes=config.hidden_sizes,
            activation=config.activation,
            batch_norm=config.batch_norm,
            dropout=config.dropout,
            residual=config.residual,
        )
    if name == "mlp":
        return MLP(
            math.prod(shape),
            output_size,
            hidden_sizes=config.hidden_sizes,
            activation=config.activation,
            batch_norm=config.batch_norm,
            dropout=config.dropout,
            residual=config.residual,
        )
    if name == "cnn":
        if cardinalities:
            raise ModelError(
                problem(
                    "model.name",
                    "'mlp' or 'tabular' for data with categorical columns",
                    name,
                    "A CNN takes images only.",
                )
            )
        return CNN(
            _image_shape(shape),
            output_size,
            channels=config.channels,
            kernel_size=config.kernel_size,
            activation=config.activation,
            batch_norm=config.batch_norm,
            dropout=config.dropout,
            hidden_sizes=config.hidden_sizes,
        )
    # Only reachable with a config built without validation (ModelConfig.model_construct).
    raise ModelError(
        problem(
            "model.name",
            "'mlp', 'cnn', 'tabular' or a 'package.module:function' reference",
            name,
            did_you_mean(name, BUILT_IN).strip(),
        )
    )


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters (shared ones counted once).

    >>> count_parameters(nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) == 3:
        return (shape[0], shape[1], shape[2])
    if len(shape) == 2:
        return (1, shape[0], shape[1])
    if len(shape) == 1:
        side = math.isqrt(shape[0])
        if side > 0 and side * side == shape[0]:
            return (1, side, side)
    raise ModelError(
        problem(
            "input_shape",
            "C x H x W, or a flat size that is a perfect square (one channel), for model.name "
            "'cnn'",
            shape,
            "Set data.as_images: true to keep the images' shape, or use model.name: mlp.",
        )
    )


def _from_reference(
    config: ModelConfig,
    input_shape: tuple[int, ...],
    output_size: int,
    cardinalities: tuple[int, ...],
) -> nn.Module:
    return build_from_factory(
        _resolve(config.name), config.kwargs, input_shape=input_shape, output_size=output_size,
        categorical_cardinalities=cardinalities, label=config.name,
    )  # fmt: skip


def build_from_factory(
    factory: Callable[..., Any],
    kwargs: Mapping[str, Any],
    *,
    input_shape: Sequence[int],
    output_size: int,
    categorical_cardinalities: Sequence[int] = (),
    field: str = "model.name",
    label: str | None = None,
) -> nn.Module:
    """``factory(**kwargs)`` plus ``input_shape``, ``output_size`` and
    ``categorical_cardinalities`` for each it accepts by name (all but the last also through
    ``**kwargs``) and ``kwargs`` does not set; what it returns must be a ``torch.nn.Module``.
    ``field`` and ``label`` (default: the factory's name) name it in the errors.

    >>> build_from_factory(nn.Linear, {"bias": False}, input_shape=(3,), output_size=2)
    Traceback (most recent call last):
    ...
    skier.errors.ModelError: model.name 'Linear' raised TypeError: ...
    >>> def make(input_shape, output_size, width=4):
    ...     return nn.Sequential(nn.Linear(input_shape[0], width), nn.Linear(width, output_size))
    >>> count_parameters(build_from_factory(make, {"width": 2}, input_shape=(3,), output_size=1))
    11
    """
    ref = label if label is not None else getattr(factory, "__qualname__", repr(factory))
    offered: dict[str, Any] = {
        "input_shape": tuple(input_shape),
        "output_size": output_size,
        "categorical_cardinalities": tuple(categorical_cardinalities),
    }
    try:
        result = _call(factory, dict(kwargs), offered)
    except SkierError:
        raise  # already says what is wrong
    except Exception as exc:  # user code: report it against the setting that named it
        raise ModelError(
            f"{field} {ref!r} raised {type(exc).__name__}: {exc}. "
            f"Check the function and its keyword arguments {dict(kwargs)!r}."
        ) from exc
    if not isinstance(result, nn.Module):
        raise ModelError(
            problem(
                field,
                "a function that returns a torch.nn.Module",
                ref,
                f"It returned {type(result).__name__}.",
            )
        )
    return result


def _resolve(ref: str) -> Callable[..., Any]:
    return resolve_reference(ref, "model.name", ModelError, what="a function or class")


def _call(factory: Callable[..., Any], kwargs: dict[str, Any], offered: dict[str, Any]) -> Any:
    """Call ``factory(**kwargs)`` plus whichever ``offered`` keywords it accepts."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        # No signature (some builtins and C extensions): try the usual keywords, then none.
        try:
            return factory(
                input_shape=offered["input_shape"], output_size=offered["output_size"], **kwargs
            )
        except TypeError:
            return factory(**kwargs)
    var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = {
        n
        for n, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    for key, value in offered.items():
        # categorical_cardinalities goes only to functions that name it: passing it through
        # **kwargs would break the common "def make(**kw): return Net(**kw)" pattern.
        accepts = key in named or (var_keyword and key != "categorical_cardinalities")
        if accepts and key not in kwargs:
            kwargs[key] = value
    return factory(**kwargs)
