"""The exact Hessian trace of networks that are piecewise-linear in each weight.

The Hessian of the loss splits as ``H = G + R``: ``G = Σ_n J_nᵀ H_n J_n`` (the Gauss-Newton
part; ``J_n`` the Jacobian of example n's outputs in the weights, ``H_n`` the loss's C×C
Hessian in those outputs) and ``R = Σ_n Σ_c (∂ℓ_n/∂f_c) ∂²f_c/∂θ²``. When every output is
piecewise-linear in each single weight (``Linear`` layers each called once, ReLU or LeakyReLU,
additions, identity, dropout in eval mode, flattening; no normalization, no products of
activations, no other nonlinearity), ``R``'s diagonal is zero almost everywhere, so
``tr H = tr G`` exactly. For an ``nn.Linear`` with input ``a`` (N×in) and output ``z`` (N×out),
and ``δ_n[c, j] = ∂f_c(x_n)/∂z_j``, its weight's share of ``tr G`` is
``Σ_n ‖a_n‖² Σ_j δ_n[:, j]ᵀ H_n δ_n[:, j]`` and its bias's ``Σ_n Σ_j δ_n[:, j]ᵀ H_n δ_n[:, j]``.

Examples do not interact (no normalization), so ``δ`` of every example comes from C backward
passes of ``Σ_n f_c(x_n)``, and ``H_n`` of every example from C Hessian-vector products of the
loss in the N×C outputs (block-diagonal: direction "class c for every example" gives column c
of every ``H_n``). So a batch costs one forward pass and 2C backward passes, against one
double-backward pass per Hutchinson probe. It applies only where it provably holds:
:func:`exact_trace_problem` checks the model's ``torch.fx`` graph and the loss, and the pass
itself checks each ``Linear``'s input (2-D, called once); anything else is reported, never
approximated.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

import torch
import torch.nn.functional as F
from torch import nn

from skier.train.hessian import Hessian
from skier.train.losses import Loss

__all__ = [
    "AUTO_MAX_OUTPUTS",
    "NotPiecewiseLinear",
    "affine_parameters",
    "exact_trace",
    "exact_trace_problem",
    "gauss_newton_problem",
    "head_trace",
    "output_linear",
    "traced",
]

_LOW_PRECISION = (torch.float16, torch.bfloat16)

# Leaf modules that keep the network piecewise-linear in each weight (dropout: in eval mode).
_MODULES = (nn.Linear, nn.ReLU, nn.LeakyReLU, nn.Identity, nn.Dropout, nn.Flatten)
_FUNCTIONS = {
    operator.add,
    torch.add,
    torch.relu,
    F.relu,
    F.leaky_relu,
    torch.flatten,
    torch.reshape,
}
_METHODS = {"add", "relu", "flatten", "view", "reshape"}


class NotPiecewiseLinear(Exception):
    """The exact trace does not apply to this model (the reason is the message)."""


def traced(model: nn.Module) -> torch.fx.Graph | str:
    """``model``'s ``torch.fx`` graph, or why it cannot be traced: trace once, check thrice."""
    try:
        return torch.fx.symbolic_trace(model).graph
    except Exception as error:  # any failure to trace: not provable
        return f"torch.fx cannot trace the model ({type(error).__name__})"


def exact_trace_problem(
    model: nn.Module,
    params: Sequence[torch.Tensor],
    loss: Loss | None,
    graph: torch.fx.Graph | str | None = None,
) -> str:
    """Why the exact trace does not apply to ``model`` with ``loss`` (``""``: it applies, to be
    confirmed by the pass itself). ``params`` are the trainable parameters; ``graph`` what
    :func:`traced` gave for ``model`` (traced here if not given)."""
    graph = traced(model) if graph is None else graph
    return _graph_problem(model, graph, params, loss, _MODULES, _FUNCTIONS, _METHODS)


# Elementwise activations: each example's outputs still depend on its own input only, and every
# weight is still a Linear's, so the pass computes ``tr G`` (no longer ``tr H``: ``R ≠ 0``).
_SMOOTH_MODULES = (
    nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.ELU, nn.CELU, nn.SELU, nn.Softplus, nn.Mish,
    nn.Hardtanh, nn.LogSigmoid, nn.Softsign,
)  # fmt: skip
_SMOOTH_FUNCTIONS = {
    torch.tanh,
    torch.sigmoid,
    F.tanh,
    F.sigmoid,
    F.gelu,
    F.silu,
    F.elu,
    F.softplus,
}
_SMOOTH_METHODS = {"tanh", "sigmoid"}


def gauss_newton_problem(
    model: nn.Module,
    params: Sequence[torch.Tensor],
    loss: Loss | None,
    graph: torch.fx.Graph | str | None = None,
) -> str:
    """Why :func:`exact_trace`'s pass cannot give ``tr G`` exactly for ``model`` with ``loss``
    (``""``: it can, to be confirmed by the pass): as :func:`exact_trace_problem`, but any
    elementwise activation is allowed (tanh, sigmoid, GELU, SiLU, ELU, softplus, …)."""
    graph = traced(model) if graph is None else graph
    return _graph_problem(
        model, graph, params, loss, _MODULES + _SMOOTH_MODULES, _FUNCTIONS | _SMOOTH_FUNCTIONS,
        _METHODS | _SMOOTH_METHODS,
    )  # fmt: skip


def output_linear(model: nn.Module, graph: torch.fx.Graph | str | None = None) -> nn.Linear | None:
    """The ``Linear`` whose output is the model's, called once and sharing no parameter, so
    its input cannot depend on its weights: the output is affine in them, ``H − G`` is zero in
    their block and ``H``'s block there is ``Σ_n a_n a_nᵀ ⊗ H_n``. ``None`` where the graph does
    not show it (no ``torch.fx`` trace, an attribute read, another last operation)."""
    graph = traced(model) if graph is None else graph
    if isinstance(graph, str):  # not traced: nothing is proven
        return None
    nodes = list(graph.nodes)
    ends = [node for node in nodes if node.op == "output"]
    if any(node.op == "get_attr" for node in nodes) or len(ends) != 1:
        return None
    last = ends[0].args[0]
    if not isinstance(last, torch.fx.Node) or last.op != "call_module":
        return None
    head = model.get_submodule(str(last.target))
    calls = [node for node in nodes if node.op == "call_module" and node.target == last.target]
    if not isinstance(head, nn.Linear) or len(calls) != 1:
        return None
    own = {id(p) for p in head.parameters(recurse=False)}
    for module in model.modules():
        if module is not head and any(id(p) in own for p in module.parameters(recurse=False)):
            return None
    return head


def affine_parameters(
    model: nn.Module, params: Sequence[torch.Tensor], graph: torch.fx.Graph | str | None = None
) -> set[int]:
    """The ids of those of ``params`` that are :func:`output_linear`'s weight and bias."""
    head = output_linear(model, graph)
    if head is None:
        return set()
    return {id(p) for p in head.parameters(recurse=False)} & {id(p) for p in params}


def head_trace(hessian: Hessian, head: nn.Linear) -> float:
    """The trace of ``H``'s block in :func:`output_linear`'s weight and bias, exactly:
    ``Σ_n tr(H_n)·(‖a_n‖² + 1)`` (``a_n`` its input; the bias's ``+1`` where it is trained),
    summed over the split's batches in float64, from one forward pass and C products of the
    loss in the outputs a batch. It holds whatever comes before the head (convolutions, batch
    norm), for a built-in per-example loss. Raises :class:`NotPiecewiseLinear` when the head's
    input or the output is not 2-D."""
    seen: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda _m, args, _o: seen.append(args[0].detach()))
    try:
        total = math.fsum(
            _head_batch(hessian, head, seen, start)
            for start in range(0, len(hessian.split), hessian.batch_size)
        )
    finally:
        handle.remove()
    if not math.isfinite(total):
        raise NotPiecewiseLinear("the output layer's trace is not finite")
    return total


def _head_batch(hessian: Hessian, head: nn.Linear, seen: list[torch.Tensor], start: int) -> float:
    stop = min(start + hessian.batch_size, len(hessian.split))
    seen.clear()
    out = hessian.model(*(t[start:stop] for t in hessian.split.inputs))
    if len(seen) != 1 or seen[0].dim() != 2 or not isinstance(out, torch.Tensor):
        raise NotPiecewiseLinear("the output layer's input is not N×features")
    if out.dim() != 2:
        raise NotPiecewiseLinear("the model's output is not N×C")
    if out.dtype in _LOW_PRECISION:
        out = out.float()
    leaf = out.detach().requires_grad_(True)
    targets = hessian.split.targets[start:stop]
    (gradient,) = torch.autograd.grad(hessian.batch_loss(leaf, targets), leaf, create_graph=True)
    diagonal = torch.zeros(out.shape[0], dtype=torch.float64, device=out.device)  # tr H_n
    if gradient.requires_grad:
        for c in range(out.shape[1]):
            direction = torch.zeros_like(leaf)
            direction[:, c] = 1.0
            (column,) = torch.autograd.grad(
                gradient, leaf, grad_outputs=direction, retain_graph=True, allow_unused=True
            )
            if column is not None:
                diagonal += column[:, c].double()
    wanted = {id(p) for p in hessian.params}
    total = 0.0
    if id(head.weight) in wanted:
        total += float((diagonal * seen[0].double().pow(2).sum(dim=1)).sum())
    if head.bias is not None and id(head.bias) in wanted:
        total += float(diagonal.sum())
    return total


def _graph_problem(
    model: nn.Module,
    graph: torch.fx.Graph | str,
    params: Sequence[torch.Tensor],
    loss: Loss | None,
    allowed: tuple[type[nn.Module], ...],
    functions: AbstractSet[object],
    methods: AbstractSet[str],
) -> str:
    if loss is not None and loss.targets is None:
        return "the loss is a callable (its Hessian in the outputs may couple examples)"
    if isinstance(graph, str):
        return graph
    modules = dict(model.named_modules())
    called: set[str] = set()
    for node in graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        if node.op == "call_module":
            module = modules.get(str(node.target))
            if not isinstance(module, allowed):
                return f"it has a {type(module).__name__} ({node.target})"
            if isinstance(module, nn.Dropout) and module.training:
                return f"{node.target} is a dropout in training mode"
            if isinstance(module, nn.Linear):
                if node.target in called:
                    return f"the Linear {node.target} is called more than once"
                called.add(str(node.target))
            continue
        if node.op == "call_function" and node.target in functions:
            continue
        if node.op == "call_method" and node.target in methods:
            continue
        name = getattr(node.target, "__name__", str(node.target))
        return f"it computes {name} ({node.op}), which is not piecewise-linear or not checked"
    linear_params = {
        id(p) for name in called for p in modules[name].parameters(recurse=False)
    }  # fmt: skip
    for p in params:
        if id(p) not in linear_params:
            return "a trainable parameter is not a Linear layer's weight or bias"
    return ""


# Past this many outputs ``auto`` estimates instead: the pass costs 2C backward passes and
# N·C² numbers a batch, against the estimator's fixed ~120 products. Measured (bench/
# bench_trace_outputs.py, MLP 64-128-C, 1,437 examples, 1 thread): the exact pass over the 120
# products 0.1x at C = 10, 0.76x at 64, 1.4x at 96, 2.4x at 128, 3.2x at 192, 7.0x at 256 — an
# exact answer is worth up to ~2.5x the estimate's time (whose error is a few percent).
AUTO_MAX_OUTPUTS = 128


def exact_trace(hessian: Hessian, max_outputs: int | None = None) -> float:
    """``tr G`` summed over the split's batches (float64), for the model, split, loss and batch
    size of ``hessian`` (whose model is in the mode measured: eval): ``tr H`` exactly where
    :func:`exact_trace_problem` finds nothing, the Gauss-Newton part only where
    :func:`gauss_newton_problem` does not either.
    Raises :class:`NotPiecewiseLinear` when a ``Linear``'s input is not 2-D, it is called more
    than once, or the outputs are not N×C (or more than ``max_outputs`` columns)."""
    model = hessian.model
    wanted = {id(p) for p in hessian.params}
    linears = [
        m for m in model.modules()
        if isinstance(m, nn.Linear) and any(id(p) in wanted for p in m.parameters(recurse=False))
    ]  # fmt: skip
    n = len(hessian.split)
    total = 0.0
    for start in range(0, n, hessian.batch_size):
        stop = min(start + hessian.batch_size, n)
        total += _batch(hessian, linears, wanted, start, stop, max_outputs)
    return total


def _batch(
    hessian: Hessian,
    linears: list[nn.Linear],
    wanted: set[int],
    start: int,
    stop: int,
    max_outputs: int | None,
) -> float:
    seen: dict[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]] = {m: [] for m in linears}

    def record(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen[module].append((args[0].detach(), output))

    handles = [m.register_forward_hook(record) for m in linears]
    try:
        inputs = tuple(t[start:stop] for t in hessian.split.inputs)
        out = hessian.model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    for calls in seen.values():
        if len(calls) != 1:
            raise NotPiecewiseLinear(f"a Linear layer ran {len(calls)} times in one pass")
        if calls[0][0].dim() != 2:
            raise NotPiecewiseLinear(f"a Linear layer's input has {calls[0][0].dim()} dimensions")
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise NotPiecewiseLinear("the model's output is not N×C")
    if max_outputs is not None and out.shape[1] > max_outputs:
        raise NotPiecewiseLinear(f"the model has more than {max_outputs} outputs")
    if out.dtype in _LOW_PRECISION:
        out = out.float()
    rows, classes = out.shape
    targets = hessian.split.targets[start:stop]
    # H_n for every example at once: column c of each from one product in direction e_c.
    leaf = out.detach().requires_grad_(True)
    (gradient,) = torch.autograd.grad(hessian.batch_loss(leaf, targets), leaf, create_graph=True)
    # Products in the outputs' precision (the model's; float32 keeps ~1e-7 per term), every
    # sum over examples and units in float64.
    h = torch.zeros(rows, classes, classes, dtype=out.dtype, device=out.device)
    if gradient.requires_grad:
        for c in range(classes):
            direction = torch.zeros_like(leaf)
            direction[:, c] = 1.0
            (column,) = torch.autograd.grad(
                gradient, leaf, grad_outputs=direction, retain_graph=True, allow_unused=True
            )
            if column is not None:
                h[:, :, c] = column
    if not bool(torch.isfinite(h).all()):
        raise NotPiecewiseLinear("the loss's Hessian in the outputs is not finite")
    # δ: ∂f_c/∂z of every Linear for every example, one backward pass per class.
    zs = [seen[m][0][1] for m in linears]
    deltas = [torch.zeros(rows, classes, z.shape[1], dtype=h.dtype, device=z.device) for z in zs]
    for c in range(classes):
        direction = torch.zeros_like(out)
        direction[:, c] = 1.0
        pieces = torch.autograd.grad(
            out, zs, grad_outputs=direction, retain_graph=c + 1 < classes, allow_unused=True
        )
        for delta, piece in zip(deltas, pieces, strict=True):
            if piece is not None:
                delta[:, c] = piece
    total = 0.0
    for module, delta in zip(linears, deltas, strict=True):  # delta: N × C × out
        # per[n] = Σ_j δ_n[:, j]ᵀ H_n δ_n[:, j]
        per = (delta * torch.bmm(h, delta)).sum(dim=1).sum(dim=1, dtype=torch.float64)
        if id(module.weight) in wanted:
            norms = seen[module][0][0].pow(2).sum(dim=1, dtype=torch.float64)
            total += float((norms * per).sum())
        if module.bias is not None and id(module.bias) in wanted:
            total += float(per.sum())
    if not math.isfinite(total):
        raise NotPiecewiseLinear("the trace is not finite")
    return total
