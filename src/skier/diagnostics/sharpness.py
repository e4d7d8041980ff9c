"""Sharpness: the top Hessian eigenvalues (Lanczos or power iteration) and the Hessian trace
(Hutchinson).

The Hessian is that of the **mean data loss** over one split (or a fixed seeded subset of it) —
the run's loss (``loss``: ``train.loss`` by name, a callable or a built
:class:`~skier.train.losses.Loss`; a class-weighted mean divides by the examples' total weight),
by default cross-entropy for classification, mean squared error for regression and binary
cross-entropy for multi-label data, exactly the loss :func:`skier.train.metrics.evaluate_split`
reports — with the model in **eval mode** (batch-norm
running statistics, no dropout), so it is the curvature of a deterministic function of the
weights. Regularization penalties (weight decay, L1/L2) are not part of it.

- **Top-k eigenvalues** by Lanczos (``method="lanczos"``, the default: all k from one Krylov
  basis, stopped on each pair's residual; see :func:`skier.train.hessian.lanczos`) or by power
  iteration with deflation (``method="power"``: each new eigenvector is kept orthogonal to the
  ones already found). Both find the eigenvalues of largest *magnitude*, so a negative
  eigenvalue (a saddle direction) can appear among them. Single-vector Lanczos sees an
  eigenvalue of exact multiplicity > 1 once; should its basis close before k pairs are found,
  the rest come from deflated power iteration.
- **Trace** by Hutchinson's estimator deflated by a Krylov basis: ``Q`` holds
  ``trace_basis`` orthonormal vectors (the basis Lanczos built for the eigenvalues, extended
  by the same recurrence to that size; with ``method="power"`` a basis built for the trace),
  whose part ``tr(QᵀHQ) = Σ qᵢᵀHqᵢ`` is exact, and Rademacher probes projected off it
  (``w = v − QQᵀv``) estimate the rest, ``E[wᵀHw] = tr H − tr(QᵀHQ)``. So the estimate is
  unbiased for any basis, and its standard error is that of the probes' mean. The basis holds
  the top of the spectrum, which is where most of ``vᵀHv``'s variance comes from: on a
  digits MLP (9.6k weights), 20 vectors cut the variance per probe 3.3–4.5x
  (``bench/RESULTS.md``). ``trace_basis=0`` gives plain Hutchinson. It needs no loss
  Hessian in the outputs, so every loss (callables too) gets it.
- **Exact trace** (``trace_method="auto"``, the default, or ``"exact"``) for a net that is
  piecewise-linear in each weight (ReLU/LeakyReLU ``Linear`` layers, additions; a built-in
  loss): there ``tr H`` equals the Gauss-Newton trace, which
  :mod:`skier.diagnostics._ggn_trace` computes from 2C backward passes a batch, no probes.
  ``auto`` falls back to the estimate wherever that is not proven; ``exact`` refuses.
- **Gauss-Newton control variate** (under ``auto``, ``trace_method`` ``"gauss_newton_cv"``)
  for a net of ``Linear`` layers and elementwise activations (tanh, sigmoid, GELU, SiLU, …;
  a built-in loss) that is not piecewise-linear: the same pass gives ``tr G`` exactly, and
  Rademacher probes estimate ``tr(H − G)`` by ``wᵀ(H − G)w`` (the gradient differentiated
  with the loss's slope in the outputs held fixed: cheaper than a product), leaving out the
  output layer's weights, where ``H − G`` is zero. Unbiased; no Krylov basis. On a tanh MLP
  64-128-10 on digits the variance per probe is 0.81, against 35 for plain Hutchinson and 20.7
  deflated by 20 vectors (GELU, two hidden layers: 7.4, 122, 29).
- **Output layer exact** (under ``auto``, ``trace_method`` ``"hutchinson_head"``) for any other
  net whose output is a ``Linear``'s (CNNs, batch norm; a built-in loss): that layer's block
  of ``H`` is ``Σ_n a_n a_nᵀ ⊗ H_n``, whose trace is exact and cheap; the deflated estimate
  (a Krylov basis of ``H`` restricted to the other weights, probes off the head) gives the
  rest. The head's off-diagonal terms held most of the probes' variance: per probe 3.5 / 1.4
  (20 vectors) against 60 plain on a batch-norm MLP, 54 / 15 against 995 on a small CNN.

Every Hessian-vector product is exact (double backward, no finite differences), and batching
does not change it: the product over the whole set is ``Σ_b (n_b/N)·H_b v``.

>>> from skier.config import DataConfig, ModelConfig, SharpnessConfig
>>> from skier.data import load_data
>>> from skier.models import build_model
>>> data = load_data(DataConfig())
>>> model = build_model(ModelConfig(hidden_sizes=[16]), input_shape=data.input_shape,
...                     output_size=10)
>>> result = sharpness(model, data, settings=SharpnessConfig(top_k=2, subset=200,
...                                                          trace_samples=10))
>>> len(result.eigenvalues), result.examples
(2, 200)
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from skier.config.base import validate_model
from skier.config.diagnostics import SharpnessConfig
from skier.data.types import DataBundle, Split
from skier.diagnostics._common import (
    choose_split,
    classification_of,
    measured_loss,
    model_device,
    preserved,
    seeded_subset,
    trainable_parameters,
)
from skier.diagnostics._ggn_trace import (
    AUTO_MAX_OUTPUTS,
    NotPiecewiseLinear,
    affine_parameters,
    exact_trace,
    exact_trace_problem,
    gauss_newton_problem,
    output_linear,
    traced,
)
from skier.diagnostics._trace import (
    gauss_newton_control,
    generator,
    hutchinson,
    hutchinson_off_head,
)
from skier.errors import ConfigError, DataError, problem
from skier.train.callbacks.progress import progress_bar_class
from skier.train.hessian import (
    Eigenpair,
    Hessian,
    KrylovBasis,
    lanczos,
    power_iteration,
)
from skier.train.losses import Loss, LossFn

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["SharpnessResult", "check_sharpness", "hessian_vector_product", "sharpness"]

_TASKS = ("classification", "regression", "multilabel")
# The trace methods that use probes (the result then reports trace_samples).
_ESTIMATES = ("hutchinson", "gauss_newton_cv", "hutchinson_head")


@dataclass
class SharpnessResult:
    """What :func:`sharpness` found.

    ``eigenvalues`` are the top-k by magnitude in the order found (``|λ1| ≥ |λ2| ≥ …`` once
    converged; a negative one is a direction of negative curvature). ``eigenvectors[i]`` holds
    one CPU tensor per trainable parameter (the shapes of ``parameter_names``), unit norm over
    all of them; ``histories[i]`` is the estimate of ``eigenvalues[i]`` after each power
    iteration. ``trace`` is the estimate from ``trace_samples`` probes deflated by
    ``trace_basis`` Krylov vectors (``None`` and 0 when not asked for) and ``trace_std_error``
    its standard error (``None`` with fewer than two probes; 0 when the basis spans every
    weight, the trace is then exact). ``trace_method`` says which ran: ``"hutchinson"``,
    ``"gauss_newton_cv"`` (``tr G`` exact plus ``trace_samples`` probes of ``H − G``;
    ``trace_basis`` 0), ``"hutchinson_head"`` (the output layer's block exact, the deflated
    estimate on the other weights), or ``"exact"`` (the Gauss-Newton trace of a
    piecewise-linear net: ``trace_std_error`` 0.0, ``trace_samples`` and ``trace_basis`` 0);
    ``None`` without a trace. ``examples`` is the
    number of examples the loss was averaged over.
    """

    eigenvalues: list[float]
    eigenvectors: list[list[torch.Tensor]]
    iterations: list[int]
    converged: list[bool]
    histories: list[list[float]]
    trace: float | None
    trace_std_error: float | None
    trace_samples: int
    examples: int
    split: str
    parameter_names: list[str]
    settings: SharpnessConfig
    seconds: float
    trace_basis: int = 0
    trace_method: str | None = None

    @property
    def top_eigenvalue(self) -> float:
        """``λ1``, the sharpness most papers report."""
        return self.eigenvalues[0]

    def plot(self) -> Figure:
        """The power iterations and the spectrum (:func:`skier.plots.plot_sharpness_figure`)."""
        from skier.plots.sharpness import plot_sharpness_figure  # matplotlib only when drawing

        return plot_sharpness_figure(self)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the eigenvectors, as plain JSON-safe values."""
        return {
            "eigenvalues": list(self.eigenvalues),
            "iterations": list(self.iterations),
            "converged": list(self.converged),
            "histories": [list(h) for h in self.histories],
            "trace": self.trace,
            "trace_std_error": self.trace_std_error,
            "trace_samples": self.trace_samples,
            "trace_basis": self.trace_basis,
            "trace_method": self.trace_method,
            "examples": self.examples,
            "split": self.split,
            "parameter_names": list(self.parameter_names),
            "settings": self.settings.model_dump(mode="json"),
            "seconds": self.seconds,
        }


def hessian_vector_product(
    model: torch.nn.Module,
    split: Split | DataBundle | tuple[Any, Any],
    vector: Sequence[torch.Tensor],
    *,
    classification: bool,
    batch_size: int = 2048,
    loss: str | LossFn | Loss | None = None,
) -> list[torch.Tensor]:
    """``H·v``, where ``H`` is the Hessian of the mean loss over ``split`` with respect to the
    trainable parameters, with the model in eval mode; the loss is ``loss`` (as
    :func:`sharpness`'s), else cross-entropy or MSE by ``classification``.

    ``vector`` holds one tensor per trainable parameter (in ``model.named_parameters()`` order,
    same shapes). The result is exact (double backward) and independent of ``batch_size``: each
    batch's product is weighted by its share of the examples. The model is left exactly as it
    was (weights, buffers, gradients, train/eval flags, RNG state).

    >>> params = [p for p in model.parameters() if p.requires_grad]   # doctest: +SKIP
    >>> hv = hessian_vector_product(model, data.train, [torch.ones_like(p) for p in params],
    ...                             classification=True)             # doctest: +SKIP
    """
    chosen = choose_split(split) if not isinstance(split, Split) else split
    named = trainable_parameters(model)
    task = "classification" if classification else None  # else what the loss and data imply
    measured = measured_loss(loss, chosen, task, "split")
    _check_split(chosen, classification and measured is None, "split")
    if not _is_positive_int(batch_size):
        raise ConfigError(problem("batch_size", "a positive integer", batch_size))
    _check_vector(vector, [p for _, p in named])
    device = model_device(model)
    with preserved(model), torch.enable_grad():
        model.eval()
        params = [p for _, p in named]
        hessian = Hessian(
            model, chosen.to(device), params, classification=classification,
            batch_size=batch_size, loss=measured,
        )  # fmt: skip
        return hessian(
            [v.to(device=p.device, dtype=p.dtype) for v, p in zip(vector, params, strict=True)]
        )


def sharpness(
    model: torch.nn.Module,
    data: DataBundle | Split | tuple[Any, Any],
    *,
    settings: SharpnessConfig | Mapping[str, Any] | None = None,
    task: str | None = None,
    loss: str | LossFn | Loss | None = None,
    progress: bool = False,
) -> SharpnessResult:
    """Top-k Hessian eigenvalues (Lanczos, or power iteration with deflation) and the Hessian trace
    (Hutchinson) of the mean loss over ``settings.split`` of ``data``, in eval mode.

    The loss is ``loss``, the run's ``train.loss`` (a name for the task, a callable
    ``f(outputs, targets)``, or a built :class:`~skier.train.losses.Loss` with its options);
    by default cross-entropy (classification), MSE (regression) or binary cross-entropy
    (multi-label), as ``evaluate_split`` defines them; ``task`` overrides what the data implies
    (a bundle's task, else long targets mean classification). The eigenvalues are the largest
    in **magnitude**, so a negative one can appear; each stops when its relative change falls
    below ``settings.tolerance`` or after ``settings.max_iterations``. Start vectors and probes
    come from local generators seeded with ``settings.seed``, so a result is reproducible and
    torch's global RNG is untouched. The model is left exactly as it was. ``progress=True``
    shows a progress bar.

    >>> result = sharpness(model, data, settings=SharpnessConfig(top_k=3, subset=1000))
    ...                                                                    # doctest: +SKIP
    >>> result.eigenvalues, result.trace                                   # doctest: +SKIP
    """
    settings, split, classification, measured, named = _checked(model, data, settings, task, loss)

    start = time.perf_counter()
    device = model_device(model)
    params = [p for _, p in named]
    budget = settings.top_k * settings.max_iterations + settings.trace * (
        settings.trace_samples + settings.trace_basis
    ) * (settings.trace_method != "exact")
    with (
        preserved(model),
        torch.enable_grad(),
        progress_bar_class()(
            total=budget, desc="sharpness", unit="hvp", disable=not progress
        ) as bar,
    ):
        model.eval()
        measured_per_example = measured is None or measured.targets is not None
        wanted = settings.trace and settings.trace_method != "hutchinson"
        graph = traced(model) if wanted else "not traced (no exact trace asked for)"
        exact = settings.trace and _exact_applies(model, params, measured, settings, graph)
        # Under auto, a net made of Linear layers and elementwise activations: tr G exactly
        # from the same pass, Hutchinson on H − G only (the Gauss-Newton control variate).
        control = (
            settings.trace and settings.trace_method == "auto"
            and not gauss_newton_problem(model, params, measured, graph)
        )  # fmt: skip
        hessian = Hessian(
            model, split.to(device), params, classification=classification,
            batch_size=settings.batch_size, loss=measured,
        )  # fmt: skip
        krylov = KrylovBasis()
        found = _top_eigenpairs(hessian, params, settings, bar, krylov)
        trace, error, basis, method = None, None, 0, None
        if exact:
            trace, error, method = _exact(hessian, settings)
        if control and trace is None:
            affine = affine_parameters(model, params, graph)
            trace, error = gauss_newton_control(hessian, params, affine, settings, bar)
            method = "gauss_newton_cv" if trace is not None else None
        if settings.trace and trace is None and settings.trace_method == "auto":
            # Any net whose output is a Linear's (CNNs, batch norm): that layer's block exactly,
            # the deflated estimate on the rest.
            head = output_linear(model, graph) if measured_per_example else None
            if head is not None:
                trace, error, basis = hutchinson_off_head(hessian, params, head, settings, bar)
                method = "hutchinson_head" if trace is not None else None
        if settings.trace and trace is None:
            trace, error, basis = hutchinson(hessian, params, settings, bar, krylov)
            method = "hutchinson"
    return SharpnessResult(
        eigenvalues=[pair.value for pair in found],
        eigenvectors=[[t.detach().cpu() for t in pair.vector] for pair in found],
        iterations=[len(pair.history) for pair in found],
        converged=[pair.converged for pair in found],
        histories=[pair.history for pair in found],
        trace=trace,
        trace_std_error=error,
        trace_samples=settings.trace_samples if method in _ESTIMATES else 0,
        examples=len(split),
        split=settings.split,
        parameter_names=[name for name, _ in named],
        settings=settings,
        seconds=time.perf_counter() - start,
        trace_basis=basis,
        trace_method=method,
    )


# --- the two estimators ------------------------------------------------------------------------


def _top_eigenpairs(
    hessian: Hessian,
    params: Sequence[torch.Tensor],
    settings: SharpnessConfig,
    bar: Any,
    krylov: KrylovBasis,
) -> list[Eigenpair]:
    starts = generator(settings.seed, 0)
    found: list[Eigenpair] = []
    budget = settings.top_k * settings.max_iterations
    if settings.method == "lanczos":
        start = [torch.randn(p.shape, generator=starts, dtype=p.dtype).to(p.device) for p in params]
        found = lanczos(
            hessian, start, count=settings.top_k, tolerance=settings.tolerance,
            max_products=budget, on_product=lambda: bar.update(1), krylov=krylov,
        )  # fmt: skip
        bar.update(budget - len(found[0].history) if found else budget)
        # An exact invariant subspace (an eigenvalue of multiplicity > 1 among the top, or a
        # tiny model) can hold fewer pairs than asked: the rest by deflated power iteration.
    for _ in range(settings.top_k - len(found)):
        start = [torch.randn(p.shape, generator=starts, dtype=p.dtype).to(p.device) for p in params]
        # Each new eigenvector is kept orthogonal to the ones already found (deflation).
        pair = power_iteration(
            hessian, start, tolerance=settings.tolerance, max_iterations=settings.max_iterations,
            basis=[p.vector for p in found], on_product=lambda: bar.update(1),
        )  # fmt: skip
        if settings.method == "power":
            bar.update(settings.max_iterations - len(pair.history))
        found.append(pair)
    return found


def check_sharpness(
    model: torch.nn.Module,
    data: DataBundle | Split | tuple[Any, Any],
    *,
    settings: SharpnessConfig | Mapping[str, Any] | None = None,
    task: str | None = None,
    loss: str | LossFn | Loss | None = None,
) -> None:
    """Raise the :class:`~skier.errors.ConfigError` or :class:`~skier.errors.DataError` that
    :func:`sharpness` would raise for these inputs, computing nothing (no Hessian product):
    the settings, the split, the loss, ``top_k`` against the parameter count and, for
    ``trace_method: exact``, whether the exact trace applies to the model. The runner calls it
    before a sharpness run's record is made."""
    _checked(model, data, settings, task, loss)


def _checked(
    model: torch.nn.Module,
    data: DataBundle | Split | tuple[Any, Any],
    settings: SharpnessConfig | Mapping[str, Any] | None,
    task: str | None,
    loss: str | LossFn | Loss | None,
) -> tuple[SharpnessConfig, Split, bool, Loss | None, list[tuple[str, torch.nn.Parameter]]]:
    """The checked settings, the split measured, whether it is classification, the measured
    loss and the trainable parameters; every input error raised here, before anything runs."""
    settings = SharpnessConfig() if settings is None else settings
    if isinstance(settings, Mapping):
        settings = validate_model(SharpnessConfig, settings, prefix="sharpness.")
    if not isinstance(settings, SharpnessConfig):
        raise ConfigError(
            problem("settings", "a SharpnessConfig or a mapping", type(settings).__name__,
                    "Build one with SharpnessConfig(top_k=..., ...).")
        )  # fmt: skip
    if task is not None and task not in _TASKS:
        raise ConfigError(problem("task", "'classification', 'regression' or 'multilabel'", task))
    if task is None and isinstance(data, DataBundle):
        task = data.task
    chosen = choose_split(data, settings.split)
    split = seeded_subset(chosen, settings.subset, settings.seed)
    classification = classification_of(split, task)
    measured = measured_loss(loss, split, task, f"data.{settings.split}")
    _check_split(split, classification and measured is None, f"data.{settings.split}")
    named = trainable_parameters(model)
    count = sum(p.numel() for _, p in named)
    if settings.top_k > count:
        raise ConfigError(
            problem("sharpness.top_k", f"at most the number of trainable parameters ({count})",
                    settings.top_k, "A Hessian has only that many eigenvalues.")
        )  # fmt: skip

    if settings.trace and settings.trace_method == "exact":
        modes = {m: m.training for m in model.modules()}
        try:
            model.eval()  # the trace is of the model in eval mode (dropout off)
            reason = exact_trace_problem(model, [p for _, p in named], measured)
        finally:
            for module, mode in modes.items():
                module.training = mode
        if reason:
            raise ConfigError(_exact_refused(reason))
    return settings, split, classification, measured, named


def _exact_applies(
    model: torch.nn.Module,
    params: Sequence[torch.Tensor],
    loss: Loss | None,
    settings: SharpnessConfig,
    graph: torch.fx.Graph | str,
) -> bool:
    """Whether the exact (Gauss-Newton) trace is to run: never for ``hutchinson``, where
    :func:`exact_trace_problem` finds nothing for ``auto``, and for ``exact`` or a
    :class:`ConfigError` naming the reason. The model is in eval mode already; ``graph`` is
    its :func:`traced` graph."""
    if settings.trace_method == "hutchinson":
        return False
    reason = exact_trace_problem(model, params, loss, graph)
    if reason and settings.trace_method == "exact":
        raise ConfigError(_exact_refused(reason))
    return not reason


def _exact_refused(reason: str) -> str:
    return problem(
        "sharpness.trace_method", "'auto' or 'hutchinson' for this model", "exact",
        "The exact trace needs a net piecewise-linear in each weight and a built-in loss; "
        f"here {reason}.",
    )  # fmt: skip


def _exact(hessian: Hessian, settings: SharpnessConfig) -> tuple[float | None, float | None, str]:
    """The exact trace (error 0.0), or ``None`` where the pass finds it does not apply after
    all (under ``auto``: the deflated Hutchinson then runs, also past ``AUTO_MAX_OUTPUTS``
    outputs, where the pass would cost more than the estimate; under ``exact``: a
    ConfigError)."""
    try:
        auto = settings.trace_method == "auto"
        return exact_trace(hessian, AUTO_MAX_OUTPUTS if auto else None), 0.0, "exact"
    except NotPiecewiseLinear as reason:
        if settings.trace_method == "exact":
            raise ConfigError(_exact_refused(str(reason))) from None
        return None, None, "hutchinson"


# --- input checks (before anything is touched) -------------------------------------------------


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_split(split: Split, classification: bool, field: str) -> None:
    problems = []
    if len(split) == 0:
        problems.append(
            problem(f"the number of examples in {field}", "at least 1", 0,
                    "Choose a split that has examples.")
        )  # fmt: skip
    if classification and split.targets.is_floating_point():
        problems.append(
            problem(f"{field}.targets", "integer class labels for classification",
                    str(split.targets.dtype), "Pass task='regression' for float targets.")
        )  # fmt: skip
    if problems:
        raise DataError(problems)


def _check_vector(vector: Sequence[torch.Tensor], params: Sequence[torch.Tensor]) -> None:
    if not isinstance(vector, Sequence) or len(vector) != len(params):
        length = len(vector) if isinstance(vector, Sequence) else type(vector).__name__
        raise ConfigError(
            problem("vector", f"one tensor per trainable parameter ({len(params)})", length)
        )
    problems = [
        problem(f"vector[{i}]", f"a tensor of shape {tuple(p.shape)}",
                tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__)
        for i, (v, p) in enumerate(zip(vector, params, strict=True))
        if not isinstance(v, torch.Tensor) or v.shape != p.shape
    ]  # fmt: skip
    if problems:
        raise ConfigError(problems)
