"""Sharpness during training: λ1 of the loss Hessian every ``every`` steps, against 2/lr.

Full-batch gradient descent with step size η sharpens until the top Hessian eigenvalue λ1
reaches about 2/η and then hovers there, the *edge of stability* (Cohen et al. 2021): a
quadratic with curvature above 2/η would make gradient descent diverge along that direction.
This callback measures λ1 during a fit so that the picture can be drawn.

λ1 is that of the **mean data loss over a fixed subset of the training data** (``subset``
examples chosen once with ``seed``, or all of them) — the fit's own loss (``train.loss``,
``fit(loss=...)``) — with the model in **eval mode** — no
dropout, batch norm with its running statistics — so each value is the curvature of a
deterministic function of the weights, the same quantity :func:`skier.diagnostics.sharpness`
reports (regularization penalties are not part of it). It is found by power iteration on exact
Hessian-vector products (:mod:`skier.train.hessian`), **warm-started** from the previous
record's eigenvector and carried on from it: the first record (or one after a non-finite loss)
starts cold and may use ``max_iterations`` products; every later one at most
``warm_iterations`` (3 by default). A capped record is the Rayleigh quotient of an iterate, so
a lower bound on the subset's λ1; it is marked unconverged and the next record goes on from
its vector, so the estimate keeps closing on λ1 as training moves it.

The values go into the history's per-step series, aligned by position:

- ``sharpness_step``: the step (``state.step``, counting optimizer steps from 1) of a record;
- ``sharpness``: λ1 at the weights after that step;
- ``sharpness_lr``: the lr that step used (``2 / sharpness_lr`` is the edge of stability);
- ``sharpness_iterations``: the Hessian-vector products the estimate took;
- ``sharpness_converged``: 1.0 where the estimate met ``tolerance``, 0.0 where it stopped at
  the cap (measured at W1 with the defaults: 2–12% below the converged λ1 of the same subset
  in most records, up to about 20% in a few; see bench/RESULTS.md).

Cost, stated and bounded: nothing on the steps in between but an integer test, and nothing at
all when the callback is not used. A record costs one forward-and-backward over the ``subset``
examples that builds the gradient's graph (when the subset fits in one ``batch_size``), then
one Hessian-vector product (a double backward) per iteration: at most ``warm_iterations`` of
them, ``max_iterations`` for the first record only. In training steps of ``batch`` examples a
warm record costs about ``(g + p · warm_iterations) · subset / batch``, so a fraction of about
``(g + p · warm_iterations) · subset / (batch · every)`` of training; measured at W1 on CPU,
g ≈ 0.7 and p ≈ 1.0, and the defaults (subset 256, warm_iterations 3) at batch 128 and every
100 cost 7–8% (bench/RESULTS.md). Memory: one gradient graph of the subset (or of
``batch_size`` examples) and one eigenvector. Training is not disturbed: the weights, buffers,
gradients, optimizer state and torch's random state are not touched (double
backward with ``torch.autograd.grad`` writes no ``.grad``), and each module's train/eval flag is
put back, so a fit with the tracker ends with exactly the weights of one without it.

>>> from skier.train import fit
>>> tracker = SharpnessTracker(data.train, every=100)                 # doctest: +SKIP
>>> result = fit(model, data, callbacks=[tracker])                    # doctest: +SKIP
>>> result.history.steps["sharpness"][:2]                             # doctest: +SKIP
[3.1, 5.7]
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from skier.data.load import as_split
from skier.data.types import DataBundle, Split
from skier.errors import ConfigError, DataError, ModelError, problem
from skier.train.callbacks.base import Callback
from skier.train.hessian import Hessian, ParamList, power_iteration, seeded_subset
from skier.train.state import TrainState

__all__ = ["SHARPNESS_KEYS", "SharpnessTracker"]

# The per-step series, in the order of a record (the plots read the same names).
SHARPNESS_KEYS = (
    "sharpness_step", "sharpness", "sharpness_lr", "sharpness_iterations", "sharpness_converged",
)  # fmt: skip
_ACCEPTS = "a DataBundle (its train split), a Split or an (inputs, targets) pair"


def _whole(value: object, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


@contextmanager
def _measuring(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and gradients on for a measurement; the train/eval flags and torch's random
    state are put back afterwards. The weights are not copied: nothing here writes them."""
    modes = {m: m.training for m in model.modules()}
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        with torch.enable_grad():
            model.eval()
            yield
    finally:
        for module, training in modes.items():
            module.training = training
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


class SharpnessTracker(Callback):
    """Record λ1, the top Hessian eigenvalue of the training loss, every ``every`` steps.

    ``data`` is the training data (a ``DataBundle``'s train split, a ``Split`` or an
    ``(inputs, targets)`` pair); λ1 is measured on a fixed seeded subset of ``subset`` examples
    (``None``: all of them). Each record runs power iteration from the last eigenvector until
    the estimate changes by less than ``tolerance`` (relative) or ``warm_iterations`` products
    have been used; the first record starts from a vector drawn with ``seed`` (a local
    generator: torch's global random state is not used) and may use ``max_iterations``.
    ``batch_size`` bounds the examples in one Hessian-vector product (memory), without changing
    the result.

    Example::

        result = fit(model, data, callbacks=[SharpnessTracker(data.train, every=100)])
        steps = result.history.steps["sharpness_step"]
        lambdas = result.history.steps["sharpness"]        # same length as steps
    """

    def __init__(
        self,
        data: DataBundle | Split | tuple[Any, Any],
        *,
        every: int,
        subset: int | None = 256,
        max_iterations: int = 20,
        warm_iterations: int = 3,
        tolerance: float = 1e-3,
        seed: int = 0,
        batch_size: int = 2048,
    ) -> None:
        problems = []
        if not _whole(every, 1):
            problems.append(problem("every", "a whole number of steps ≥ 1", every,
                                    "Record every step with every=1."))  # fmt: skip
        if subset is not None and not _whole(subset, 1):
            problems.append(problem("subset", "a whole number of examples ≥ 1, or None", subset,
                                    "None measures on the whole training split."))  # fmt: skip
        if not _whole(max_iterations, 2):
            problems.append(problem("max_iterations", "a whole number ≥ 2", max_iterations,
                                    "Power iteration needs two products to stop."))  # fmt: skip
        if not _whole(warm_iterations, 1):
            problems.append(problem("warm_iterations", "a whole number ≥ 1", warm_iterations,
                                    "It caps each warm-started record."))  # fmt: skip
        if (
            isinstance(tolerance, bool)
            or not isinstance(tolerance, (int, float))
            or not 0.0 < tolerance < 1.0
        ):
            problems.append(problem("tolerance", "a relative change in (0, 1)", tolerance))
        if not _whole(batch_size, 1):
            problems.append(problem("batch_size", "a whole number of examples ≥ 1", batch_size))
        if isinstance(seed, bool) or not isinstance(seed, int):
            problems.append(problem("seed", "an integer", seed))
        if problems:
            raise ConfigError(problems)
        split = data.train if isinstance(data, DataBundle) else as_split(data, accepts=_ACCEPTS)
        if len(split) == 0:
            raise DataError(problem("the number of examples in data", "at least 1", 0))
        self.data = split
        self.every = every
        self.subset = subset
        self.max_iterations = max_iterations
        self.warm_iterations = warm_iterations
        self.tolerance = float(tolerance)
        self.seed = seed
        self.batch_size = batch_size
        self._measured: Split | None = None  # the subset, on the model's device
        self._reset()

    def _reset(self) -> None:
        self._vector: ParamList | None = None  # the last eigenvector: the next warm start
        self._pending: list[tuple[int, float, int, bool]] = []  # (step, λ1, products, converged)
        self.series: dict[str, list[float]] = {}  # what this callback wrote into the history

    # --- the hooks ---------------------------------------------------------------------------
    def on_fit_start(self, state: TrainState) -> None:
        if state.task == "classification" and self.data.targets.is_floating_point():
            raise DataError(
                problem("SharpnessTracker's data targets", "integer class labels for "
                        "classification", str(self.data.targets.dtype),
                        "Pass the training split the fit uses.")
            )  # fmt: skip
        field = "SharpnessTracker's data targets"  # and what the fit's own loss needs of them
        problems = state.loss.check_targets(self.data.targets, 0, field) if state.loss else []
        if problems:
            raise DataError(problems)
        if state.step == 0:  # a fresh fit; a resume keeps the loaded state
            self._reset()
        # A resumed fit's history may come back without the per-step series: put ours back.
        for key, values in self.series.items():
            if key not in state.history.steps:
                for value in values:
                    state.history.add_step(key, value)
        model = state.measured_model()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self._measured = seeded_subset(self.data, self.subset, self.seed).to(device)

    def on_batch_end(self, state: TrainState) -> None:
        if state.step % self.every == 0:
            self._record(state)

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        self._flush(state)

    def on_fit_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        self._flush(state)

    # --- checkpointing -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "every": self.every,
            "subset": self.subset,
            "seed": self.seed,
            "vector": None if self._vector is None else [v.detach().cpu() for v in self._vector],
            "pending": [list(p) for p in self._pending],
            "series": {k: list(v) for k, v in self.series.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = (state["every"], state["subset"], state["seed"])
        if saved != (self.every, self.subset, self.seed):
            raise ConfigError(
                f"SharpnessTracker must match the checkpoint's every={saved[0]}, "
                f"subset={saved[1]}, seed={saved[2]}; got every={self.every}, "
                f"subset={self.subset}, seed={self.seed}."
            )
        vector = state["vector"]
        self._vector = None if vector is None else [v.clone() for v in vector]
        # (step, λ1, products[, converged]): checkpoints from before the flag are taken as met.
        self._pending = [
            (int(p[0]), float(p[1]), int(p[2]), bool(p[3]) if len(p) > 3 else True)
            for p in state["pending"]
        ]
        self.series = {str(k): [float(x) for x in v] for k, v in state["series"].items()}

    # --- the work ----------------------------------------------------------------------------
    def _record(self, state: TrainState) -> None:
        model = state.measured_model()
        params = [p for p in model.parameters() if p.requires_grad]
        assert self._measured is not None  # set in on_fit_start
        warm = self._warm(params)
        start = self._start(params, warm)
        cap = self.warm_iterations if warm else self.max_iterations
        try:
            with _measuring(model):
                hessian = Hessian(
                    model, self._measured, params, classification=state.task == "classification",
                    batch_size=self.batch_size, loss=state.loss,
                )  # fmt: skip
                pair = power_iteration(hessian, start, tolerance=self.tolerance, max_iterations=cap)
                del hessian  # frees the gradient's graph before training goes on
        except ModelError:  # a non-finite loss: the loop's own guard decides what happens next
            self._vector = None
            self._pending.append((state.step, math.nan, 0, False))
            return
        self._vector = [v.detach() for v in pair.vector]
        self._pending.append((state.step, pair.value, len(pair.history), pair.converged))

    def _warm(self, params: list[torch.nn.Parameter]) -> bool:
        """Whether the last record's eigenvector can start this one."""
        if self._vector is None:
            return False
        return [v.shape for v in self._vector] == [p.shape for p in params]

    def _start(self, params: list[torch.nn.Parameter], warm: bool) -> ParamList:
        """The last eigenvector (warm), or a vector drawn with ``seed`` (cold)."""
        if warm and self._vector is not None:
            return [
                v.to(device=p.device, dtype=p.dtype)
                for v, p in zip(self._vector, params, strict=True)
            ]
        generator = torch.Generator().manual_seed(self.seed)
        return [
            torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) for p in params
        ]

    def _flush(self, state: TrainState) -> None:
        """Write the epoch's records, with the lr each step used, into the history."""
        if not self._pending:
            return
        lrs = state.history.steps.get("lr", [])  # complete for the epoch once it has ended
        for step, value, products, converged in self._pending:
            lr = lrs[step - 1] if 0 < step <= len(lrs) else math.nan
            row = (step, value, lr, products, float(converged))
            for key, x in zip(SHARPNESS_KEYS, row, strict=True):
                state.history.add_step(key, float(x))
                self.series.setdefault(key, []).append(float(x))
        self._pending = []
