"""The flattened forward: a model's forward pass as one Python function of functional calls.

Calling a module costs Python time of its own (``Module.__call__`` checks for hooks, then
``forward`` reads every parameter through ``Module.__getattr__``): skier's MLP 64-128-10 spends
about half its forward pass at batch 64 in it. :func:`flat_forward` traces a model with
``torch.fx`` once and writes the same computation as straight-line code: ``F.linear`` on the
module's own weight and bias, ``F.relu``, ``F.dropout`` ... The result is bit-identical to
``model(x)`` (the same ops on the same tensors, in the same order; dropout draws the same random
numbers), forward and backward.

What is flattened, and what is not:

- The modules whose ``forward`` is inlined are skier's :class:`~skier.models.MLP` and
  :class:`~skier.models.DenseBlock` and ``nn.Sequential``, whose forwards depend only on their
  submodules. Any other class (a user's own network, whose forward may read a Python attribute
  the trace would freeze, or branch on its input's shape as skier's CNN does) is called as a
  module; a root of any other class is not flattened (:func:`flat_forward` returns ``None``,
  and the caller calls the model), nor is a model fx cannot trace.
- Leaf modules written as functional calls: ``Linear``, ``Identity``, ``Flatten``, ``Dropout``
  (its ``p`` and ``training`` read at every call) and the activations (ReLU, LeakyReLU, ELU,
  GELU, SiLU, Tanh, Sigmoid, Softplus), every argument read from the module at call time.
  Every other leaf (``BatchNorm`` with its running statistics, convolutions, ...) stays a module
  call.
- The function answers ``model(x)`` itself whenever a module call could differ: a forward or
  backward hook on any module of the model, or a global module hook (checked at every call:
  a few dict reads), and :meth:`FlatForward.valid` (checked by the caller once an epoch) says
  whether the model still has the structure that was traced (the same submodules, classes and
  ``forward`` methods, nothing compiled in place).

``fit`` takes its training forward through it (:data:`ENABLED` switches it off), and so does the
LR range test; evaluation, compiled (``train.compile`` or a model the caller compiled) and
data-parallel training call the module. What it saves: ~20 µs a forward pass of the MLP
64-128-10 at batch 64, ~10% of ``fit``'s CPU time a step at the bench suite's W3 (bench/RESULTS.md,
sixth session). What it costs: a trace, ~3 ms the first time a process sees a structure (kept
for the next model of the same structure: ~0.05 ms), the hook check at every step (~1 µs) and
the structure check once an epoch (~20 µs): a fit of fewer than ~100 steps of a structure new to
the process can be slower by up to ~3 ms. ``skier.models.flat.ENABLED = False`` turns it off.

>>> from skier.models import MLP
>>> model = MLP(4, 3, hidden_sizes=(8,))
>>> flat = flat_forward(model)
>>> x = torch.randn(5, 4)
>>> bool(torch.equal(flat(x), model(x)))
True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from types import CodeType
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.modules import module as _module

from skier.models.blocks import DenseBlock
from skier.models.mlp import MLP

__all__ = ["ENABLED", "FlatForward", "flat_forward", "training_forward"]

ENABLED = True
"""Whether ``fit`` and the LR range test take the flattened forward where it is safe."""

# Classes whose forward reads nothing but their submodules: traced through (inlined).
_INLINED: tuple[type[nn.Module], ...] = (MLP, DenseBlock, nn.Sequential)

# Leaf modules written as functional calls, each as a template over the module's variable
# ``{m}`` and its first argument ``{x}``: every setting is read from the module at call time, so
# a changed ``p``, ``inplace`` or training flag is seen as a module call would see it.
_FUNCTIONAL: dict[type[nn.Module], str] = {
    nn.Linear: "F.linear({x}, {m}._parameters['weight'], {m}._parameters['bias'])",
    nn.Identity: "{x}",
    nn.Flatten: "{x}.flatten({m}.start_dim, {m}.end_dim)",
    nn.Dropout: "F.dropout({x}, {m}.p, {m}.training, {m}.inplace)",
    nn.ReLU: "F.relu({x}, inplace={m}.inplace)",
    nn.LeakyReLU: "F.leaky_relu({x}, {m}.negative_slope, {m}.inplace)",
    nn.ELU: "F.elu({x}, {m}.alpha, {m}.inplace)",
    nn.GELU: "F.gelu({x}, approximate={m}.approximate)",
    nn.SiLU: "F.silu({x}, inplace={m}.inplace)",
    nn.Tanh: "torch.tanh({x})",
    nn.Sigmoid: "torch.sigmoid({x})",
    nn.Softplus: "F.softplus({x}, {m}.beta, {m}.threshold)",
}

# The per-module hook dicts Module.__call__ looks at, and the global ones (torch 2.x).
_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_GLOBAL_HOOKS = (
    "_global_forward_hooks", "_global_forward_pre_hooks",
    "_global_backward_hooks", "_global_backward_pre_hooks",
)  # fmt: skip


class _Tracer(fx.Tracer):
    """Traces through the inlined classes only; every other module is a leaf."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return type(m) not in _INLINED


class FlatForward:
    """``model``'s forward pass as one generated function (see the module docstring).

    ``flat(*inputs)`` is ``model(*inputs)``; :meth:`valid` says whether the traced structure
    still holds (the caller drops the flat forward when it does not).
    """

    def __init__(self, model: nn.Module, fn: Callable[..., Any], source: str) -> None:
        self.model = model
        self.source = source  # the generated code, for reading
        self._fn = fn
        self._modules = list(model.modules())
        self._structure = _structure(self._modules)

    def __call__(self, *inputs: Any) -> Any:
        return self._fn(*inputs)

    def valid(self) -> bool:
        """Whether the model still has the structure that was traced: the same modules with
        the same classes and ``forward`` methods, none overridden on the instance or compiled
        in place, none added or removed."""
        modules = list(self.model.modules())
        return modules == self._modules and _structure(modules) == self._structure


def _replaced(m: nn.Module) -> bool:
    """Whether calling ``m`` runs something else than its class's ``forward``: a forward set
    on the instance, or the module compiled in place (``module.compile()``)."""
    return "forward" in m.__dict__ or m._compiled_call_impl is not None


def _structure(modules: list[nn.Module]) -> list[Any]:
    """What the trace depends on: each module's class, its class's forward, its children and
    parameter names, and whether anything replaced its call (instance forward, compile)."""
    return [
        (type(m), type(m).forward, _replaced(m), list(m._modules.items()), list(m._parameters),
         list(m._buffers))
        for m in modules
    ]  # fmt: skip


def flat_forward(model: nn.Module) -> FlatForward | None:
    """The flattened forward of ``model`` (see the module docstring), or ``None`` when it
    cannot be flattened (or would gain nothing): a class not known to be traceable, a trace
    that fails, a placeholder with a default or variable arguments, a forward replaced on an
    instance or compiled in place.

    A trace (a few ms) is kept for the structure it was made of (classes, children, parameter
    names): another model of the same structure, as a search or a rerun builds, reuses its
    code with its own modules."""
    if type(model) not in _INLINED or not all(hasattr(_module, n) for n in _GLOBAL_HOOKS):
        return None
    modules = list(model.modules())
    if any(_replaced(m) for m in modules):  # a call that is not the class's forward
        return None
    key = _key(modules)
    if key not in _TRACES:
        if len(_TRACES) >= _KEEP:
            _TRACES.clear()
        _TRACES[key] = _trace(model)
    traced = _TRACES[key]
    if traced is None:
        return None
    code, constants, source = traced
    scope = {"F": F, "torch": torch, "_model": model, **constants}
    scope.update({f"m{i}": m for i, m in enumerate(modules)})
    exec(code, scope)
    return FlatForward(model, scope["flat_forward"], source)


_Traced = tuple[CodeType, dict[str, Any], str]  # the code, its constants, its source
_TRACES: dict[tuple[Any, ...], _Traced | None] = {}
_KEEP = 64  # structures kept


def _key(modules: list[nn.Module]) -> tuple[Any, ...]:
    """The structure a trace depends on: what the inlined forwards read (classes, forwards,
    children, parameter and buffer names), with each child as its index in ``modules``."""
    index = {id(m): i for i, m in enumerate(modules)}
    return tuple(
        (type(m), type(m).forward, tuple(m._parameters), tuple(m._buffers),
         tuple((k, None if c is None else index[id(c)]) for k, c in m._modules.items()))
        for m in modules
    )  # fmt: skip


def _trace(model: nn.Module) -> _Traced | None:
    try:
        graph = _Tracer(autowrap_modules=()).trace(model)  # type: ignore[arg-type]  # no math.*
    except Exception:  # anything fx cannot trace is called as a module
        return None
    return _generate(model, graph)


def _generate(model: nn.Module, graph: fx.Graph) -> _Traced | None:
    """The generated code, its constants and its source, or ``None`` for a graph it does not
    handle. Module ``i`` of ``model.modules()`` is ``m{i}``, the model ``_model``."""
    modules = list(model.modules())
    names = {id(m): f"m{i}" for i, m in enumerate(modules)}
    scope: dict[str, Any] = {}
    consts = itertools.count()
    values: dict[fx.Node, str] = {}
    params: list[str] = []
    body: list[str] = []
    functional = 0

    def constant(value: Any) -> str:
        name = f"c{next(consts)}"
        scope[name] = value
        return name

    def render(arg: Any) -> str:
        if isinstance(arg, fx.Node):
            return values[arg]
        if isinstance(arg, tuple):
            return "(" + "".join(render(a) + ", " for a in arg) + ")"
        if isinstance(arg, list):
            return "[" + ", ".join(render(a) for a in arg) + "]"
        if isinstance(arg, dict):
            return "{" + ", ".join(f"{k!r}: {render(v)}" for k, v in arg.items()) + "}"
        if arg is None or isinstance(arg, (bool, int, str)):
            return repr(arg)
        if isinstance(arg, float) and math.isfinite(arg):
            return repr(arg)
        return constant(arg)  # dtypes, devices, slices, non-finite floats, ...

    def call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        parts = [render(a) for a in args] + [f"{k}={render(v)}" for k, v in kwargs.items()]
        return ", ".join(parts)

    for i, node in enumerate(graph.nodes):
        var = f"v{i}"
        if node.op == "placeholder":
            if node.args or str(node.target).startswith("*"):  # a default, *args or **kwargs
                return None
            values[node] = var
            params.append(var)
            continue
        if node.op == "output":
            body.append(f"return {render(node.args[0])}")
            break
        if node.op == "get_attr":  # a parameter or buffer of an inlined module, read at call
            owner_name, _, attr = str(node.target).rpartition(".")
            owner = model.get_submodule(owner_name)
            where = "_parameters" if attr in owner._parameters else "_buffers"
            if attr not in getattr(owner, where):
                return None
            expr = f"{names[id(owner)]}.{where}[{attr!r}]"
        elif node.op == "call_function":
            expr = f"{constant(node.target)}({call(node.args, node.kwargs)})"
        elif node.op == "call_method":
            first, *rest = node.args
            expr = f"{render(first)}.{node.target}({call(tuple(rest), node.kwargs)})"
        elif node.op == "call_module":
            leaf = model.get_submodule(str(node.target))
            template = _FUNCTIONAL.get(type(leaf))
            if template == "{x}" and len(node.args) == 1 and not node.kwargs:
                values[node] = render(node.args[0])  # Identity: the same value
                functional += 1
                continue
            if template is not None and len(node.args) == 1 and not node.kwargs:
                expr = template.format(m=names[id(leaf)], x=render(node.args[0]))
                functional += 1
            else:
                expr = f"{names[id(leaf)]}({call(node.args, node.kwargs)})"
        else:
            return None
        values[node] = var
        body.append(f"{var} = {expr}")
    if functional == 0:
        return None  # nothing to gain
    hooks = [constant(getattr(_module, n)) for n in _GLOBAL_HOOKS]
    hooks += [f"{names[id(m)]}.{h}" for m in modules for h in _HOOKS]
    signature = ", ".join(params)
    source = "\n".join(
        [
            f"def flat_forward({signature}):",
            f"    if {' or '.join(hooks)}:",  # a hook anywhere: the module call runs it
            f"        return _model({signature})",
            *(f"    {line}" for line in body),
        ]
    )
    return compile(source, "<skier flat forward>", "exec"), scope, source


def training_forward(
    model: nn.Module, trained: Callable[..., Any], current: Callable[..., Any] | None = None
) -> Callable[..., Any]:
    """What a training step calls for its forward pass. First (``current`` None): the flat
    forward of ``model`` where :data:`ENABLED` and ``trained`` is ``model`` itself (not compiled,
    not wrapped for data-parallel training) and it can be flattened, else ``trained``. After
    that (once an epoch): ``current`` while it is a flat forward still :meth:`~FlatForward.valid`,
    else ``trained``."""
    if current is not None:
        valid = not isinstance(current, FlatForward) or current.valid()
        return current if valid else trained
    if not ENABLED or trained is not model:
        return trained
    return flat_forward(model) or trained
