"""Hessian-vector products of the mean data loss, and power iteration on them.

The one place for this work: :func:`skier.diagnostics.sharpness` (top-k eigenvalues, trace)
and the :class:`~skier.train.callbacks.SharpnessTracker` callback (λ1 during training) both
use it. It lives in ``train`` because a callback may import nothing above ``train``.

The Hessian is that of the **mean data loss** over a split — the run's loss (``loss``: a
:class:`~skier.train.losses.Loss`; a weighted mean's denominator is the split's total class
weight, as torch's weighted mean), else cross-entropy for classification and mean squared
error for regression — as :func:`skier.train.metrics.evaluate_split` reports it.
The caller puts the model in the mode it wants (both users choose eval mode). Every product is
exact (double backward), and batching does not change it: the product over the whole set is
``Σ_b (n_b/N)·H_b v``.

>>> model = torch.nn.Linear(2, 1)
>>> split = Split((torch.randn(8, 2),), torch.randn(8, 1))
>>> params = list(model.parameters())
>>> hessian = Hessian(model, split, params, classification=False, batch_size=64)
>>> pair = power_iteration(hessian, [torch.ones_like(p) for p in params], tolerance=1e-10)
>>> pair.value > 0, pair.converged
(True, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from skier.data.types import Split
from skier.errors import ModelError, problem
from skier.train.losses import Loss

__all__ = [
    "Eigenpair",
    "Hessian",
    "KrylovBasis",
    "ParamList",
    "dot",
    "extend_krylov",
    "lanczos",
    "norm",
    "normalized",
    "orthogonalize",
    "power_iteration",
    "seeded_subset",
]

ParamList = list[torch.Tensor]

# Outputs in a reduced precision are lifted to float32 for the loss, as evaluate_split does;
# float64 outputs stay float64 so that a float64 model gets a float64 Hessian.
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack([torch.sum(x * y) for x, y in zip(a, b, strict=True)]).sum()


def norm(a: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(dot(a, a))


def seeded_subset(split: Split, size: int | None, seed: int) -> Split:
    """A fixed random subset of ``size`` examples (the whole split if ``size`` is None or
    not smaller); the same seed gives the same subset on every call and machine."""
    n = len(split)
    if size is None or size >= n:
        return split
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(n, generator=generator)[:size].sort().values
    return split.take(index.to(split.device))


class Hessian:
    """``v ↦ H·v`` for the mean loss over ``split``; the caller has put the model in the mode
    it measures in (eval mode, for both users), and ``split`` on the model's device.

    When the whole split fits in one batch, the gradient's graph is built once and every
    product is one backward pass through it (measured on a 50k-parameter MLP and 1,000 digits,
    CPU: 4.6 ms against 8.1 ms for rebuilding it, 13 against 21 ms on one busy thread).
    Otherwise each product rebuilds the graph batch by batch, so memory stays that of one
    batch. ``torch.func``'s forward-over-reverse ``jvp(grad(f))`` is just as exact but was
    slower still (11 ms; 26 ms), and batching probes with ``is_grads_batched`` was slower than
    a loop of products, so neither is used (measured again on a tanh MLP 64-128-10 and 1,437
    digits, one thread, per product: a loop 1.8–2.2 ms, ``is_grads_batched`` 2.7–4.0 ms and
    ``vmap(jvp(grad))`` 2.5–6.5 ms for 1–32 probes at once; the pass is mostly matrix products
    and elementwise ops over N×hidden, which batching does not shrink). ``torch.autograd.grad``
    never writes ``.grad``, so the parameters' gradients are untouched.

    :meth:`residual_form` gives ``vᵀRv`` for ``R = H − G``, the part of the Hessian that is not
    Gauss-Newton: ``Σ_n Σ_c (∂ℓ_n/∂f_c)·∇²f_c``, the gradient ``Jᵀs`` differentiated with the
    loss's slope ``s`` in the outputs held fixed (a graph of its own, built on first use when
    the split is one batch). It skips the loss's curvature, so it costs less than a product.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        split: Split,
        params: Sequence[torch.Tensor],
        *,
        classification: bool,
        batch_size: int,
        loss: Loss | None = None,
    ) -> None:
        self.model = model
        self.split = split
        self.params = list(params)
        self.classification = classification
        self.batch_size = batch_size
        self.loss = loss
        # What the summed loss is divided by: the examples, or their total class weight.
        weight = loss.total_weight(split.targets) if loss is not None else None
        self._denominator = float(weight) if weight is not None else float(len(split))
        self._gradient: list[torch.Tensor | None] | None = None
        self._residual: list[torch.Tensor | None] | None = None
        if len(split) <= batch_size:
            self._gradient = self._batch_gradient(0, len(split))

    def _batch_gradient(self, start: int, stop: int) -> list[torch.Tensor | None]:
        """The gradient of ``(n_b/N)·mean loss of the batch``, with its graph kept."""
        inputs = tuple(t[start:stop] for t in self.split.inputs)
        targets = self.split.targets[start:stop]
        out = self.model(*inputs)
        if out.dtype in _LOW_PRECISION:
            out = out.float()
        loss = self.batch_loss(out, targets)
        grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        return list(grads)

    def _residual_gradient(self, start: int, stop: int) -> list[torch.Tensor | None]:
        """``Jᵀs`` of the batch with the slope ``s = ∂(batch loss)/∂outputs`` detached: its
        derivative in the weights is the batch's ``R``."""
        inputs = tuple(t[start:stop] for t in self.split.inputs)
        out = self.model(*inputs)
        if out.dtype in _LOW_PRECISION:
            out = out.float()
        loss = self.batch_loss(out, self.split.targets[start:stop])
        (slope,) = torch.autograd.grad(loss, out, retain_graph=True)
        grads = torch.autograd.grad(
            out, self.params, grad_outputs=slope.detach(), create_graph=True, allow_unused=True
        )
        return list(grads)

    def residual_form(self, vector: Sequence[torch.Tensor]) -> float:
        """``vᵀRv`` (``R = H − G``) of the mean loss over the split, batch by batch, in float64."""
        n = len(self.split)
        whole = n <= self.batch_size
        if whole and self._residual is None:
            self._residual = self._residual_gradient(0, n)
        total = 0.0
        for start in range(0, n, self.batch_size):
            graph = self._residual if whole else None
            if graph is None:
                graph = self._residual_gradient(start, min(start + self.batch_size, n))
            piece = self._product(graph, vector, keep=whole)
            total += sum(
                float(torch.sum(v.double() * h.double()))
                for v, h in zip(vector, piece, strict=True)
                if h is not None
            )
        if not math.isfinite(total):
            raise ModelError(
                problem(
                    "the Hessian's residual form vᵀ(H − G)v",
                    "finite",
                    total,
                    "The loss is not finite at these weights (or overflows); check the model "
                    "and the data, or use float64.",
                )
            )
        return total

    def batch_loss(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """A batch's share of the mean loss over the whole split, from its outputs ``out``
        (already lifted from a reduced precision): the sum over the split's batches is the
        mean loss whose Hessian this is."""
        if self.loss is not None:  # the batch's summed loss over the whole set's denominator
            return self.loss.batch_sum(out, targets)[0] / self._denominator
        if self.classification:
            mean = F.cross_entropy(out, targets)
        else:
            mean = F.mse_loss(out, targets.reshape(out.shape).to(out.dtype))
        # Weight each batch mean by its share of the examples: the mean over the whole set
        # is Σ (n_b/N)·mean_b, not Σ mean_b (which would scale with the number of batches).
        return mean * (out.shape[0] / len(self.split))

    def _product(
        self, gradient: list[torch.Tensor | None], vector: Sequence[torch.Tensor], keep: bool
    ) -> list[torch.Tensor | None]:
        # Only gradient entries that depend on the weights carry curvature; the others (unused
        # parameters, or parameters the loss is linear in) contribute nothing.
        used = [(g, v) for g, v in zip(gradient, vector, strict=True) if g is not None]
        used = [(g, v) for g, v in used if g.requires_grad]
        if not used:
            return [None] * len(self.params)
        products = torch.autograd.grad(
            [g for g, _ in used],
            self.params,
            grad_outputs=[v for _, v in used],
            retain_graph=keep,
            allow_unused=True,
        )
        return list(products)

    def __call__(self, vector: Sequence[torch.Tensor]) -> ParamList:
        total = [torch.zeros_like(p) for p in self.params]
        n = len(self.split)
        for start in range(0, n, self.batch_size):
            if self._gradient is not None:
                piece = self._product(self._gradient, vector, keep=True)
            else:
                gradient = self._batch_gradient(start, min(start + self.batch_size, n))
                piece = self._product(gradient, vector, keep=False)
            for t, h in zip(total, piece, strict=True):
                if h is not None:
                    t.add_(h.detach())
        if not all(bool(torch.isfinite(t).all()) for t in total):
            raise ModelError(
                problem(
                    "the Hessian-vector product",
                    "finite",
                    "nan or inf",
                    "The loss is not finite at these weights (or overflows); check the model "
                    "and the data, or use float64.",
                )
            )
        return total


# --- power iteration ---------------------------------------------------------------------------


@dataclass
class Eigenpair:
    """One eigenvalue estimate: ``value`` is ``vᵀHv`` of ``vector`` (unit norm); ``history``
    the estimate after each product (its length is the number of products used)."""

    value: float
    vector: ParamList
    history: list[float]
    converged: bool


def orthogonalize(vector: ParamList, basis: Sequence[ParamList]) -> ParamList:
    """Gram–Schmidt against every vector of ``basis``, which deflates them out of a power
    iteration: it then converges to the largest eigenvalue of the rest."""
    for b in basis:
        coefficient = dot(vector, b)
        vector = [v - coefficient * u for v, u in zip(vector, b, strict=True)]
    return vector


def normalized(vector: ParamList) -> tuple[ParamList, float]:
    """``vector / ‖vector‖`` and the norm (the vector itself when the norm is 0 or not finite)."""
    length = float(norm(vector))
    if length == 0.0 or not math.isfinite(length):
        return vector, length
    return [v / length for v in vector], length


def power_iteration(
    hessian: Callable[[Sequence[torch.Tensor]], ParamList],
    start: ParamList,
    *,
    tolerance: float,
    max_iterations: int = 100,
    basis: Sequence[ParamList] = (),
    on_product: Callable[[], None] | None = None,
) -> Eigenpair:
    """The eigenvalue of largest magnitude of ``hessian`` off ``basis``, from ``start``.

    It stops when the estimate's relative change falls below ``tolerance`` (so at least two
    products) or after ``max_iterations`` products. A ``start`` close to the answer (the last
    eigenvector, a moment of training ago) converges in a few products: a warm start.
    ``on_product`` is called after each product (a progress bar).
    """
    vector, _ = normalized(orthogonalize(start, basis))
    history: list[float] = []
    converged = False
    evaluated = vector
    for _ in range(max_iterations):
        evaluated = vector
        product = hessian(vector)
        if on_product is not None:
            on_product()
        # The Rayleigh quotient vᵀHv (‖v‖ = 1) estimates the eigenvalue; it converges
        # twice as fast as ‖Hv‖ and keeps the sign.
        value = float(dot(vector, product))
        previous = history[-1] if history else None
        history.append(value)
        if previous is not None and abs(value - previous) <= tolerance * abs(previous):
            converged = True
            break
        following, length = normalized(orthogonalize(product, basis))
        if length == 0.0:  # Hv = 0 off the basis: v is an eigenvector for 0
            converged = True
            break
        vector = following
    # Return the vector whose Rayleigh quotient is the reported value, so that vᵀHv = λ.
    return Eigenpair(history[-1], evaluated, history, converged)


# --- Lanczos -----------------------------------------------------------------------------------


def _flat(vector: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in vector])


def _unflat(flat: torch.Tensor, like: Sequence[torch.Tensor]) -> ParamList:
    pieces = torch.split(flat, [t.numel() for t in like])
    return [piece.view(t.shape) for piece, t in zip(pieces, like, strict=True)]


# The Krylov basis is kept whole (full reorthogonalization); past this many bytes it stops
# growing and the pairs it has are returned, marked unconverged if they are not.
_LANCZOS_MEMORY = 1 << 30


def lanczos(
    hessian: Callable[[Sequence[torch.Tensor]], ParamList],
    start: ParamList,
    *,
    count: int,
    tolerance: float,
    max_products: int,
    on_product: Callable[[], None] | None = None,
    krylov: KrylovBasis | None = None,
) -> list[Eigenpair]:
    """The ``count`` eigenpairs of largest magnitude of ``hessian``, by Lanczos from ``start``.

    One product per step builds a Krylov basis (kept orthogonal by full reorthogonalization,
    twice per step); the eigenpairs of the small tridiagonal matrix it gives (Ritz pairs)
    approximate all the wanted eigenpairs at once. A pair ``(θ, x)`` is converged when its
    residual ``‖Hx − θx‖``, which Lanczos knows without another product, is at most
    ``tolerance·|θ|``; the eigenvalue's own error is then of order ``residual²/gap``, far
    smaller. It stops when every wanted pair has converged, after ``max_products`` products,
    or when the basis spans an invariant subspace (every Ritz pair is then exact).

    Where power iteration with deflation spends up to ``max_iterations`` products on each
    eigenvalue in turn and its error falls only as ``(λ2/λ1)^t``, Lanczos needs far fewer
    products for the same accuracy (it is optimal among Krylov methods). The basis costs one
    vector of the model's size per product (at most 1 GiB here). ``history`` of pair *i*
    holds its Ritz value after each product from the *i*-th on. A ``krylov`` passed in is filled
    with the orthonormal basis built and its Rayleigh quotients (for the trace's deflation).

    >>> a = torch.diag(torch.tensor([5.0, -3.0, 1.0, 0.5], dtype=torch.float64))
    >>> pairs = lanczos(lambda v: [a @ v[0]], [torch.ones(4, dtype=torch.float64)], count=2,
    ...                 tolerance=1e-10, max_products=10)
    >>> [round(p.value, 6) for p in pairs], all(p.converged for p in pairs)
    ([5.0, -3.0], True)
    """
    import numpy as np

    like = [t.detach() for t in start]
    q = _flat(like)
    size = q.numel()
    itemsize = q.element_size()
    fits = max(count + 1, _LANCZOS_MEMORY // max(1, size * itemsize))
    max_products = max(1, min(max_products, size, fits))
    q = q / q.norm()
    basis = torch.empty(max_products, size, dtype=q.dtype, device=q.device)
    basis[0] = q
    alphas: list[float] = []
    betas: list[float] = []
    histories: list[list[float]] = [[] for _ in range(count)]
    eps = float(torch.finfo(q.dtype).eps)
    theta = np.zeros(0)
    ritz = np.zeros((0, 0))
    chosen = np.zeros(0, dtype=int)
    converged = np.zeros(count, dtype=bool)
    for m in range(max_products):
        w = _flat(hessian(_unflat(basis[m], like))).to(q.dtype)
        if on_product is not None:
            on_product()
        alphas.append(float(torch.dot(basis[m], w)))
        done = basis[: m + 1]
        for _ in range(2):  # classical Gram-Schmidt twice: orthogonal to working precision
            w = w - done.T @ (done @ w)
        beta = float(w.norm())
        t = np.diag(np.asarray(alphas, dtype=np.float64))
        if betas:
            off = np.asarray(betas, dtype=np.float64)
            t += np.diag(off, 1) + np.diag(off, -1)
        theta, ritz = np.linalg.eigh(t)
        chosen = np.argsort(-np.abs(theta), kind="stable")[:count]
        scale = float(np.max(np.abs(theta))) if theta.size else 0.0
        residuals = beta * np.abs(ritz[-1, chosen])
        for i, j in enumerate(chosen):
            histories[i].append(float(theta[j]))
        invariant = beta <= 64 * eps * max(scale, 1e-30) or m + 1 == size
        found = len(chosen) == count
        converged = np.zeros(count, dtype=bool)
        converged[: len(chosen)] = invariant or residuals <= tolerance * np.abs(theta[chosen])
        if invariant or (found and converged.all()) or m + 1 == max_products:
            break
        betas.append(beta)
        basis[m + 1] = w / beta
    used = basis[: len(alphas)]
    if krylov is not None:
        krylov.vectors, krylov.diagonal = used, list(alphas)
        krylov.next = w / beta if beta > 64 * eps * max(scale, 1e-30) else None
    vectors = torch.as_tensor(ritz[:, chosen], dtype=q.dtype, device=q.device)
    pairs = []
    for i, j in enumerate(chosen):
        x = used.T @ vectors[:, i]
        x = x / x.norm()
        pairs.append(Eigenpair(float(theta[j]), _unflat(x, like), histories[i], bool(converged[i])))
    return pairs


@dataclass
class KrylovBasis:
    """An orthonormal basis ``Q`` (``vectors``, one flat row each) with ``diagonal[i] =
    qᵢᵀHqᵢ``, so ``tr(QᵀHQ) = Σ diagonal`` exactly, and ``next``, the unit direction that
    continues the Krylov recurrence (``None``: the basis spans an invariant subspace)."""

    vectors: torch.Tensor | None = None
    diagonal: list[float] = field(default_factory=list)
    next: torch.Tensor | None = None


def extend_krylov(
    hessian: Callable[[Sequence[torch.Tensor]], ParamList],
    krylov: KrylovBasis,
    like: ParamList,
    *,
    size: int,
    generator: torch.Generator,
    on_product: Callable[[], None] | None = None,
    support: torch.Tensor | None = None,
) -> KrylovBasis:
    """Grows ``krylov`` (empty, or the basis :func:`lanczos` built) to ``size`` orthonormal
    vectors (at most the dimension, and at most what fits in lanczos's 1 GiB) by the same
    recurrence, one product each: ``Hq`` made orthogonal to every vector so far (twice) is the
    next direction. Where the recurrence closes (an invariant subspace), or the basis is empty,
    it goes on from a random vector of ``generator`` made orthogonal to the basis. ``like``
    gives the parameters' shapes. ``support`` (a flat 0/1 mask) confines the random vectors, and
    so the basis, to its coordinates, for an operator that maps them into themselves (at most
    as many vectors as it has ones).

    >>> a = torch.diag(torch.tensor([3.0, 3.0, 1.0, 1.0, 2.0], dtype=torch.float64))
    >>> basis = extend_krylov(lambda v: [a @ v[0]], KrylovBasis(), [torch.zeros(5, dtype=a.dtype)],
    ...                       size=5, generator=torch.Generator().manual_seed(0))
    >>> round(sum(basis.diagonal), 9), basis.vectors.shape   # the whole space: tr A exactly
    (10.0, torch.Size([5, 5]))
    """
    dim = sum(t.numel() for t in like)
    dtype, device = like[0].dtype, like[0].device
    kept = krylov.vectors
    have = 0 if kept is None else kept.shape[0]
    # Never past the dimension, nor past lanczos's memory bound (a basis already larger stays).
    fits = _LANCZOS_MEMORY // max(1, dim * torch.empty((), dtype=dtype).element_size())
    room = dim if support is None else int(support.count_nonzero())
    size = max(have, min(size, room, fits))
    rows = torch.empty(size, dim, dtype=dtype, device=device)
    if kept is not None:
        rows[:have] = kept
    nxt = krylov.next
    while have < size:
        if nxt is None:
            nxt = torch.randn(dim, generator=generator, dtype=dtype).to(device)
            if support is not None:
                nxt = nxt * support.to(device=device, dtype=dtype)
        before = float(nxt.norm())
        done = rows[:have]
        for _ in range(2):  # classical Gram-Schmidt twice, as in lanczos
            nxt = nxt - done.T @ (done @ nxt)
        length = float(nxt.norm())
        if not (math.isfinite(length) and length > 1e-6 * before):
            nxt = None  # Hq lay in the basis (an invariant subspace): a random restart
            continue
        q = nxt / length
        w = _flat(hessian(_unflat(q, like))).to(dtype)
        if on_product is not None:
            on_product()
        krylov.diagonal.append(float(torch.dot(q, w)))
        rows[have] = q
        have += 1
        nxt = w
    krylov.vectors = rows if size else None
    krylov.next = nxt
    return krylov
