"""A landscape's row of points evaluated several at a time, with no Python pass per point.

Along a row of the grid the weights are ``θ_row + α·δ`` (``θ_row = θ0 + β·η``). For a model
that is a plain graph of ``Linear`` layers and element-wise functions, ``K`` points of a row run
as one stacked pass over a block of the data, every value laid out as ``(K, features,
examples)``: a ``Linear`` fed by earlier layers is ``(W_row + α_k D) h_k + b_row + α_k d`` for
the ``K`` points in one batched product (``baddbmm``), its ``K`` weights made by one
``addcmul``; a ``Linear`` fed by the data alone is ``F(θ_row) + α_k·F(δ)``, its outputs
computed once (as in :mod:`skier.diagnostics._factored`), so the ``K`` points cost one
``addcmul``; an activation runs once on the stacked tensor (in place where nothing else reads
its input). The examples along the last dimension keep torch's CPU kernels on their fast paths
for few classes: a product with 6-15 output rows, a log-softmax and a max over the classes'
dimension with the examples contiguous (``F.linear`` with 10 outputs, the cross-entropy of 10
columns and the arg-max over them are each several times slower the other way round; bench/
RESULTS.md, sixth session). The loss and the error (the first maximum, as ``argmax``) are
computed for the ``K`` points at once and summed per point. The model is never called nor
written: its parameters are read.

The model is read with ``torch.fx``; only a graph of allow-listed pieces is taken (``Linear``,
``ReLU``/``LeakyReLU``/``Tanh``/``GELU``/``SiLU``/``Sigmoid``, ``Identity``, ``Dropout`` in
eval mode, ``flatten`` of the data from dimension 1 on, additions and the like), with one input,
one tensor output of one row per example, no hooks and no patched ``forward``. Anything else
(batch norm, a convolution, a hooked module, a graph ``torch.fx`` cannot trace) gets ``None``
from :meth:`RowPlan.find`, and the landscape keeps its one-point-at-a-time path.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from skier.data.types import Split
from skier.diagnostics._common import ParamList
from skier.train.losses import Loss

__all__ = ["RowPlan"]

_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.GELU, nn.SiLU, nn.Sigmoid)
_PASS = (nn.Identity, nn.Dropout)
_LEAVES = (nn.Linear, nn.Flatten, *_ACTIVATIONS, *_PASS)
# element-wise functions and their in-place forms (None: none used)
_FUNCTIONS: dict[Any, Any] = {
    F.relu: torch.relu_, torch.relu: torch.relu_, torch.tanh: torch.tanh_,
    torch.sigmoid: torch.sigmoid_, F.gelu: None, F.silu: None, F.leaky_relu: None,
    operator.add: None, operator.sub: None, operator.mul: None, operator.truediv: None,
    torch.add: None, torch.sub: None, torch.mul: None,
}  # fmt: skip
_KWARGS = {"inplace", "alpha", "approximate", "negative_slope"}
_METHODS = {"relu": torch.relu_, "tanh": torch.tanh_, "sigmoid": torch.sigmoid_}
_IN_PLACE_MODULES: dict[type, Callable[[torch.Tensor], torch.Tensor]] = {
    nn.ReLU: torch.relu_, nn.Tanh: torch.tanh_, nn.Sigmoid: torch.sigmoid_,
}  # fmt: skip
_ROWS = 2048  # points x examples of one stacked pass: its activations stay in the cache
_BLOCK = 256  # examples of one stacked pass
_MAX_ELEMENTS = 1 << 26  # the data-fed layers' precomputed outputs


def _module_fn(m: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """An allow-listed module as a function that never writes its input (``inplace`` off)."""
    if isinstance(m, nn.LeakyReLU):
        slope = m.negative_slope
        return lambda t: F.leaky_relu(t, slope)
    if isinstance(m, nn.GELU):
        approximate = m.approximate
        return lambda t: F.gelu(t, approximate=approximate)
    if isinstance(m, _PASS):
        return lambda t: t
    plain: dict[type, Callable[[torch.Tensor], torch.Tensor]] = {
        nn.ReLU: torch.relu, nn.Tanh: torch.tanh, nn.Sigmoid: torch.sigmoid, nn.SiLU: F.silu,
    }  # fmt: skip
    return plain[type(m)]


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, _LEAVES) or super().is_leaf_module(m, qualname)


def _hooked(model: nn.Module) -> bool:
    glob = nn.modules.module
    if glob._global_forward_hooks or glob._global_forward_pre_hooks:
        return True
    return any(
        m._forward_hooks or m._forward_pre_hooks or "forward" in m.__dict__ for m in model.modules()
    )


class _Linear:
    """A ``Linear``'s weights along a row (``W_row``, ``D``, ``b_row``, ``d``) and, fed by the
    data alone, its outputs per block of examples at ``θ0`` and along each direction."""

    def __init__(self, module: nn.Linear, index: dict[int, int]) -> None:
        self.module = module
        self.w = index.get(id(module.weight))
        self.b = None if module.bias is None else index.get(id(module.bias))
        self.factored: dict[int, list[torch.Tensor]] = {}
        self.row: dict[int, torch.Tensor] = {}
        self.weight = self.dweight = self.bias = self.dbias = torch.empty(0)
        self.chunk: torch.Tensor | None = None  # the alphas that ``stacked`` is for
        self.stacked = (self.bias, self.weight)

    def part(self, which: str, params: Sequence[torch.Tensor], base: bool = False
             ) -> torch.Tensor | None:  # fmt: skip
        """The layer's ``weight`` or ``bias`` in ``params`` (the weights ``θ0`` with ``base``,
        else a direction); one that is not trained is its own value at ``θ0``, zero along a
        direction."""
        own = getattr(self.module, which)
        if own is None:
            return None
        i = self.w if which == "weight" else self.b
        if i is not None:
            return params[i]
        return own.detach() if base else torch.zeros_like(own)

    def outputs(self, h: torch.Tensor, base: ParamList, dirs: Sequence[ParamList]
                ) -> list[torch.Tensor]:  # fmt: skip
        """Its outputs for data-only input ``h`` at ``θ0`` and along each direction, laid out
        as ``(features, examples)``."""
        out = []
        for params, at_base in [(base, True)] + [(d, False) for d in dirs]:
            w = self.part("weight", params, at_base)
            assert w is not None
            out.append(F.linear(h, w, self.part("bias", params, at_base)).t().contiguous())
        return out

    def set_row(self, base: ParamList, dirs: Sequence[ParamList], beta: float) -> None:
        w, b = self.part("weight", base, True), self.part("bias", base, True)
        dw, db = self.part("weight", dirs[0]), self.part("bias", dirs[0])
        assert w is not None and dw is not None
        if len(dirs) > 1:
            ew, eb = self.part("weight", dirs[1]), self.part("bias", dirs[1])
            assert ew is not None
            w = torch.add(w, ew, alpha=beta)
            b = None if b is None or eb is None else torch.add(b, eb, alpha=beta)
        self.weight, self.dweight, self.chunk = w, dw, None
        zero = w.new_zeros(w.shape[0])
        self.bias = zero if b is None else b
        self.dbias = zero if db is None else db
        self.row = {
            k: p[0] if len(p) == 2 else torch.add(p[0], p[2], alpha=beta)
            for k, p in self.factored.items()
        }


class _Step:
    """One graph node: how it is computed, and whether it depends on the weights (stacked)."""

    def __init__(self, node: fx.Node, kind: str, stacked: bool, fn: Any = None) -> None:
        self.node, self.kind, self.stacked, self.fn = node, kind, stacked, fn
        self.in_place: Any = None
        self.layer: _Linear | None = None


def _step(node: fx.Node, modules: dict[str, nn.Module], index: dict[int, int],
          moving: bool, dtype: torch.dtype) -> _Step | None:  # fmt: skip
    """The step for one node (``None``: not one this module evaluates)."""
    if node.op == "call_module":
        m = modules.get(str(node.target))
        if type(m) not in _LEAVES or node.kwargs or len(node.args) != 1:
            return None
        if isinstance(m, nn.Dropout) and m.training:
            return None
        if type(m) is nn.Linear:
            if m.weight.dtype != dtype:
                return None
            step = _Step(node, "linear", True)
            step.layer = _Linear(m, index)
            return step
        if type(m) is nn.Flatten:  # of the data only: its examples' dimension stays first
            start, end = m.start_dim, m.end_dim
            fine = not moving and start > 0 and end != 0
            return _Step(node, "call", False, lambda t: t.flatten(start, end)) if fine else None
        step = _Step(node, "call", moving, _module_fn(m))  # type: ignore[arg-type]
        step.in_place = _IN_PLACE_MODULES.get(type(m))
        return step
    if node.op == "call_function" and node.target is operator.getitem and not moving:
        return _Step(node, "function", False, operator.getitem)  # indexing the data
    if node.op == "call_function" and node.target in _FUNCTIONS:
        if set(node.kwargs) - _KWARGS:
            return None
        step = _Step(node, "function", moving, node.target)
        step.in_place = _FUNCTIONS[node.target] if set(node.kwargs) <= {"inplace"} else None
        return step
    if node.op == "call_method" and node.target == "flatten":
        rest: list[Any] = list(node.args[1:])
        first, last = (rest + [0, -1][len(rest) :])[:2]
        begin, stop = node.kwargs.get("start_dim", first), node.kwargs.get("end_dim", last)
        fine = isinstance(begin, int) and isinstance(stop, int) and begin > 0 and stop != 0
        return _Step(node, "method", False, "flatten") if fine and not moving else None
    if node.op == "call_method" and node.target in _METHODS and len(node.args) == 1:
        step = _Step(node, "method", moving, str(node.target))
        step.in_place = _METHODS[str(node.target)]
        return step
    return None


class RowPlan:
    """Rows of a landscape for a model that is a plain graph of allow-listed pieces."""

    def __init__(self, steps: list[_Step], split: Split, output: fx.Node, *,
                 loss: Loss | None, classification: bool) -> None:  # fmt: skip
        self.steps, self.split, self.output = steps, split, output
        self.layers = [s.layer for s in steps if s.layer is not None]
        self.moving = {s.node for s in steps if s.stacked}
        self.loss, self.classification = loss, classification
        n = len(split)
        size = -(-n // -(-n // _BLOCK))  # blocks of at most _BLOCK examples, of equal sizes
        self.blocks = [(i, min(i + size, n)) for i in range(0, n, size)]
        self.data: list[dict[fx.Node, torch.Tensor]] = []
        self.output_size = 1
        self.negate = False  # the loss sums are of log-probabilities
        self.weight = loss.total_weight(split.targets) if loss is not None else None
        y = split.targets
        # the loss on the (points, classes, examples) layout: class targets only
        self.classes = y.dim() == 1 and y.dtype == torch.int64 and (
            (loss is None and classification) or (loss is not None and loss.targets == "classes")
        )  # fmt: skip
        self.plain = loss is None or loss.pads  # plain cross-entropy where classes
        per = max(1, _ROWS // size)  # each block's targets for the K points, (K, 1, examples)
        self.targets = (
            [y[lo:hi].expand(per, 1, hi - lo) for lo, hi in self.blocks] if self.classes else []
        )

    @classmethod
    def find(cls, model: nn.Module, split: Split, params: Sequence[torch.Tensor],
             base: ParamList, dirs: Sequence[ParamList], *, loss: Loss | None,
             classification: bool) -> RowPlan | None:  # fmt: skip
        """The plan for ``model`` at weights ``base`` (``θ0``, for the trained ``params``) on
        ``split``; ``None`` where the model is not a graph this module evaluates, or the loss is
        not one it computes."""
        if len(split.inputs) != 1 or _hooked(model) or len(split) == 0:
            return None
        if loss is not None and (loss.per_example is None or loss.targets is None):
            return None
        x = split.inputs[0]
        if not x.is_floating_point():
            return None
        try:
            graph = _Tracer().trace(model)
        except Exception:  # any model torch.fx cannot trace keeps the ordinary path
            return None
        modules = dict(model.named_modules())
        for node in list(graph.nodes):  # identities (dropout in eval mode) are left out
            m = modules.get(str(node.target)) if node.op == "call_module" else None
            identity = type(m) is nn.Identity or (type(m) is nn.Dropout and not m.training)
            if identity and len(node.args) == 1 and not node.kwargs:
                assert isinstance(node.args[0], fx.Node)
                node.replace_all_uses_with(node.args[0])
                graph.erase_node(node)
        index = {id(p): i for i, p in enumerate(params)}
        steps: list[_Step] = []
        stacked: dict[fx.Node, bool] = {}
        output: fx.Node | None = None
        for node in graph.nodes:
            if node.op == "output":
                output = node.args[0] if isinstance(node.args[0], fx.Node) else None
                break
            moving = any(stacked.get(a, False) for a in node.all_input_nodes)
            if node.op == "placeholder":
                step: _Step | None = None if steps else _Step(node, "input", False)
            else:
                step = _step(node, modules, index, moving, x.dtype)
            if step is None:
                return None
            stacked[node] = step.stacked
            steps.append(step)
        if output is None or not stacked.get(output, False):
            return None
        for step in steps:  # in place only on a value made in this pass that nothing else reads
            source = step.node.args[0] if step.node.args else None
            fresh = isinstance(source, fx.Node) and stacked.get(source, False)
            if not (step.stacked and fresh and len(source.users) == 1):  # type: ignore[union-attr]
                step.in_place = None
        plan = cls(steps, split, output, loss=loss, classification=classification)
        with torch.no_grad():
            return plan if plan._factor(base, dirs) else None

    def _factor(self, base: ParamList, dirs: Sequence[ParamList]) -> bool:
        """Each block's data-only values (those a stacked step reads, as ``(features,
        examples)``) and data-fed layers' outputs; ``False`` where they are not 2-D per
        block or too large."""
        budget = _MAX_ELEMENTS
        x = self.split.inputs[0]
        for b, (lo, hi) in enumerate(self.blocks):
            values: dict[fx.Node, torch.Tensor] = {}
            kept: dict[fx.Node, torch.Tensor] = {}
            for step in self.steps:
                if step.kind == "input":
                    values[step.node] = x[lo:hi]
                elif not step.stacked:
                    values[step.node] = self._run(step, values, 1, None)
                    continue
                for source in step.node.all_input_nodes:
                    if source in self.moving or (source in kept and step.layer is None):
                        continue
                    if values[source].dim() != 2 or len(values[source]) != hi - lo:
                        return False
                    if step.layer is not None:
                        pieces = step.layer.outputs(values[source], base, dirs)
                        budget -= sum(p.numel() for p in pieces)
                        if budget < 0:
                            return False
                        step.layer.factored[b] = pieces
                    else:
                        kept[source] = values[source].t().contiguous()
            self.data.append(kept)
        return True

    def _run(self, step: _Step, values: dict[fx.Node, torch.Tensor], k: int,
             alphas: torch.Tensor | None, block: int = 0) -> torch.Tensor:  # fmt: skip
        node = step.node
        if step.kind == "linear":
            layer = step.layer
            assert layer is not None and alphas is not None
            row = layer.row.get(block)
            if row is not None:
                return torch.addcmul(row, alphas, layer.factored[block][1])
            if layer.chunk is not alphas:  # the K points' weights, once a chunk
                layer.chunk = alphas
                layer.stacked = (
                    torch.addcmul(layer.bias, alphas.view(k, 1), layer.dbias).unsqueeze(2),
                    torch.addcmul(layer.weight, alphas, layer.dweight),
                )
            source = node.args[0]
            assert isinstance(source, fx.Node)
            return torch.baddbmm(*layer.stacked, values[source])
        args = [values[a] if isinstance(a, fx.Node) else a for a in node.args]
        if step.in_place is not None:
            return step.in_place(args[0])
        if step.kind == "call":
            return step.fn(args[0])
        kwargs = {k: v for k, v in node.kwargs.items() if k != "inplace"}  # never in place
        if step.kind == "method":
            return getattr(args[0], step.fn)(*args[1:], **kwargs)
        return step.fn(*args, **kwargs)

    def row(self, base: ParamList, dirs: Sequence[ParamList], alphas: np.ndarray, beta: float
            ) -> tuple[list[float], list[float], list[int]]:  # fmt: skip
        """Loss and error at ``θ0 + α·δ + β·η`` for each α, read in one synchronisation, and
        the points to evaluate again the ordinary way: those where some example's maximum
        logit is reached twice (an exact tie, which ``argmax`` breaks by column order and
        the count here does not) or is NaN."""
        x, n = self.split.inputs[0], len(self.split)
        run = [s for s in self.steps if s.stacked]
        with torch.no_grad():
            for layer in self.layers:
                layer.set_row(base, dirs, beta)
            every = torch.as_tensor(alphas, dtype=x.dtype, device=x.device)
            per = max(1, _ROWS // (self.blocks[0][1] - self.blocks[0][0]))
            sums = []
            for first in range(0, len(alphas), per):
                chunk = every[first : first + per].view(-1, 1, 1)  # (K, 1, 1)
                k = len(chunk)
                # each block's sums (loss, wrong, below), added up in float64 once a chunk
                parts = torch.empty(3, len(self.blocks), k, dtype=x.dtype, device=x.device)
                into = list(zip(*(p.unbind(0) for p in parts.unbind(0)), strict=True))
                for b, data in enumerate(self.data):
                    values = dict(data)
                    for step in run:
                        values[step.node] = self._run(step, values, k, chunk, b)
                    self._sums(values[self.output], b, *into[b])
                sums.append(parts.sum(dim=1, dtype=torch.float64))
            read = torch.cat(sums, dim=1).tolist()
        denominator = float(self.weight) if self.weight is not None else float(n)
        denominator = (-1.0 if self.negate else 1.0) * (denominator if denominator > 0 else 1.0)
        loss_values = [v / denominator for v in read[0]]
        if not self.classification:
            return loss_values, [math.nan] * len(alphas), []
        classes = self.output_size
        again = [i for i, v in enumerate(read[2]) if v != n * (classes - 1)]
        return loss_values, [round(w) / n if w == w else math.nan for w in read[1]], again

    def _sums(self, out: torch.Tensor, block: int, loss: torch.Tensor, wrong: torch.Tensor,
              below: torch.Tensor) -> None:  # fmt: skip
        """Each point's summed loss (``negate``: its negative), wrong count and, for classes,
        how many logits are below their example's maximum, for ``out`` (``(K, outputs,
        examples)``), written into ``loss``, ``wrong`` and ``below`` (``(K,)`` each)."""
        k, rows = out.shape[0], out.shape[-1]
        self.output_size = out.shape[1]
        if self.classes and out.shape[1] > 1:
            targets = self.targets[block]
            if len(targets) != k:
                targets = targets[:k]
            self.negate = self.plain
            if self.plain:  # cross-entropy: the target's log-probability, summed
                picked = torch.log_softmax(out, dim=1).gather(1, targets)
                torch.sum(picked, dim=(1, 2), out=loss)
            else:
                assert self.loss is not None and self.loss.per_example is not None
                values = self.loss.per_example(out, targets.reshape(k, rows))
                torch.sum(values, dim=1, out=loss)
            if self.classification:  # sign(max - logit): 1 below the maximum, 0 at it
                signs = torch.sub(out.amax(dim=1, keepdim=True), out).sign_()
                torch.sum(signs.gather(1, targets), dim=(1, 2), out=wrong)
                torch.sum(signs, dim=(1, 2), out=below)
            return
        self.negate = False
        y = self.split.targets[self.blocks[block][0] : self.blocks[block][1]]
        flat = out.transpose(1, 2).reshape(k * rows, out.shape[1])
        targets = y.repeat(k, *([1] * (y.dim() - 1)))
        if self.loss is not None:
            assert self.loss.per_example is not None
            values = self.loss.per_example(flat, targets)
        elif self.classification:
            values = F.cross_entropy(flat, targets, reduction="none")
        else:
            squared = F.mse_loss(flat, targets.reshape(flat.shape), reduction="none")
            values = squared.sum(dim=1) / out.shape[1]
        loss.copy_(values.reshape(k, rows).sum(dim=1))
        wrong.zero_()
        below.zero_()
        if self.classification:
            wrong.copy_(_wrong(flat, targets).view(k, rows).sum(dim=1))
            below.fill_(rows * (out.shape[1] - 1))


def _wrong(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each example's being wrong, as :func:`skier.train.metrics.count_wrong` counts it."""
    if y.dim() == 2:
        return ((out > 0) != (y > 0.5)).any(dim=1)
    if out.shape[-1] == 1:
        return (out[..., 0] > 0).long() != y
    return out.argmax(dim=-1) != y
