"""skier's diagnostics against the reference tools people use, same model, same data, same run.

* **Hessian** (top-3 eigenvalues, then the trace): skier's :func:`skier.diagnostics.sharpness`
  (Lanczos, its default, and power iteration) against PyHessian 0.1 (``hessian(...)``,
  ``eigenvalues(top_n=3)``, ``trace()``), both on the whole set as one batch, at the same
  tolerance (1e-3 for PyHessian's power iteration, skier's default 1e-4 residual for Lanczos).
  Agreement: each top eigenvalue against a tightly converged reference (skier's Lanczos at
  1e-8, checked against PyHessian at 1e-8).
* **Hessian trace** against the exact trace (the sum of the Hessian's diagonal, one product per
  unit vector, computed once a run): each estimator over ``--seeds`` seeds, its RMS error and
  CPU time (``time.thread_time``, the seeds interleaved). PyHessian's ``trace(maxIter=100,
  tol=0)`` (100 probes) against skier's deflated trace with ``--trace-samples`` probes (chosen
  so that the RMS errors match), both alone and with λ1 (the job ``skier sharpness`` does by
  default: the Lanczos basis is then reused), plain Hutchinson in skier for the record, and
  PyHessian at its defaults (``tol=1e-3``: it stops when the running mean moves < 0.1%);
  and skier's exact trace (``trace_method="exact"``: the Gauss-Newton trace, equal to the
  Hessian's for this ReLU net), alone and with λ1. ``trace_tanh`` and ``trace_gelu``: the same
  on the MLP with tanh (64-128-10) and with two GELU layers (64-64-64-10), trained the same way,
  where the exact trace does not apply: PyHessian against what ``auto`` runs there (the
  Gauss-Newton control variate, ``--tanh-samples`` / ``--gelu-samples`` probes) and the deflated
  estimate forced. ``trace_cnn`` and ``trace_batch_norm``: a small CNN and the MLP with batch
  norm, where ``auto`` takes the output layer's block exactly and the deflated estimate on the
  rest (``--other-samples`` probes).
* **LR range test**: skier's :func:`skier.diagnostics.lr_range.lr_range_test` against
  torch-lr-finder 0.2.2 (``LRFinder.range_test``), Adam, 100 exponential steps from 1e-6 to 10,
  batch 64, the same initial weights, optimizer (skier's fused Adam), batch order, lr ramp,
  smoothing factor and divergence threshold; agreement: the raw loss of each step on both
  curves (the same steps give the same losses), and the steepest-descent lrs. Wall and CPU
  (``time.thread_time``) times, median of the paired ratios.
* **2-D landscape, 51 x 51, filter-normalized**: skier's :func:`landscape` against the
  ``loss-landscapes`` package 3.0.6 (``random_plane``) and against a per-point loop with skier's
  own directions (the loop's surface must equal skier's to 1e-5).

The workload: an MLP 64-128-10 on scikit-learn's digits (the 1,437 examples that are not test),
trained 20 full-batch Adam steps from seed 0. Timings are medians over ``--rounds`` interleaved
rounds, in one process; speed-ups are the reference's median ÷ skier's.

Usage (the reference tools live in their own environment, never skier's)::

    bash bench/setup_refs.sh
    OMP_NUM_THREADS=1 bench/.refs/bin/python bench/bench_reference_tools.py \\
        --json bench/results/reference_tools.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from skier.config import DataConfig, LandscapeConfig, ModelConfig, OptimConfig, SharpnessConfig
from skier.data import Split, load_data
from skier.diagnostics.landscape import landscape
from skier.diagnostics.lr_range import lr_range_test
from skier.diagnostics.sharpness import sharpness
from skier.models import build_model
from skier.optim import build_optimizer


def _workload(
    activation: str = "relu", hidden: tuple[int, ...] = (128,), kind: str = "mlp"
) -> tuple[torch.nn.Module, Split]:
    """The MLP (``kind="mlp"``; ``"batch_norm"``: with batch norm) or a CNN (``"cnn"``: two
    3×3 convolutions of 8 channels on the 8×8 images, ReLU, a Linear head), trained 20
    full-batch Adam steps from seed 0."""
    data = load_data(DataConfig())
    assert data.val is not None
    x = torch.cat([data.train.inputs[0], data.val.inputs[0]])
    y = torch.cat([data.train.targets, data.val.targets])
    torch.manual_seed(0)
    model: torch.nn.Module
    if kind == "cnn":
        x = x.reshape(-1, 1, 8, 8)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3), torch.nn.ReLU(),
            torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10),
        )  # fmt: skip
    else:
        config = ModelConfig(
            hidden_sizes=list(hidden), activation=activation, batch_norm=kind == "batch_norm"
        )
        model = build_model(config, input_shape=(64,), output_size=10)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(20):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, Split((x,), y)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# --- Hessian --------------------------------------------------------------------------------------


def _pyhessian(model: torch.nn.Module, split: Split, tol: float, trace: bool) -> dict[str, Any]:
    from pyhessian import hessian  # the reference tool, from bench/.refs

    model.eval()
    comp = hessian(model, F.cross_entropy, data=(split.inputs[0], split.targets), cuda=False)
    values, _ = comp.eigenvalues(top_n=3, tol=tol, maxIter=100)
    out: dict[str, Any] = {"eigenvalues": [float(v) for v in values]}
    if trace:
        # tol=0 never stops early: exactly maxIter probes, as many as skier's.
        samples = comp.trace(maxIter=100, tol=0.0)
        out["trace"] = float(np.mean(samples))
        out["trace_se"] = float(np.std(samples, ddof=1) / math.sqrt(len(samples)))
    model.zero_grad(set_to_none=True)
    return out


def _skier_hessian(model: torch.nn.Module, split: Split, method: str, trace: bool) -> Any:
    settings = SharpnessConfig(top_k=3, method=method, trace=trace, trace_samples=100,
                               batch_size=len(split))  # fmt: skip
    return sharpness(model, split, settings=settings)


def bench_hessian(model: torch.nn.Module, split: Split, rounds: int) -> dict[str, Any]:
    reference = sharpness(
        model,
        split,
        settings=SharpnessConfig(
            top_k=3, tolerance=1e-8, max_iterations=500, trace=False, batch_size=len(split)
        ),
    )
    truth = reference.eigenvalues
    check = _pyhessian(model, split, 1e-8, trace=False)["eigenvalues"]

    def error(values: list[float]) -> float:
        return max(abs(a - b) / abs(b) for a, b in zip(sorted(values, key=abs, reverse=True),
                                                       truth, strict=True))  # fmt: skip

    kinds = ("skier_lanczos", "skier_power", "pyhessian", "pyhessian_1e-6")
    times: dict[str, list[float]] = {k: [] for k in kinds}
    found: dict[str, Any] = {}
    for _ in range(rounds):
        t, r = _timed(lambda: _skier_hessian(model, split, "lanczos", trace=False))
        times["skier_lanczos"].append(t)
        found["skier_lanczos"] = (r.eigenvalues, r.iterations[0])
        t, r = _timed(lambda: _skier_hessian(model, split, "power", trace=False))
        times["skier_power"].append(t)
        found["skier_power"] = (r.eigenvalues, sum(r.iterations))
        t, r = _timed(lambda: _pyhessian(model, split, 1e-3, trace=False))
        times["pyhessian"].append(t)
        found["pyhessian"] = (r["eigenvalues"], None)
        # PyHessian asked for an accuracy nearer Lanczos's (its power iteration at 1e-6).
        t, r = _timed(lambda: _pyhessian(model, split, 1e-6, trace=False))
        times["pyhessian_1e-6"].append(t)
        found["pyhessian_1e-6"] = (r["eigenvalues"], None)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "reference_eigenvalues": truth,
        "pyhessian_at_1e-8": check,
        "reference_vs_pyhessian_1e-8": error(check),
        "median_s": med,
        "speedup_lanczos_vs_pyhessian": med["pyhessian"] / med["skier_lanczos"],
        "speedup_power_vs_pyhessian": med["pyhessian"] / med["skier_power"],
        "speedup_lanczos_vs_pyhessian_1e-6": med["pyhessian_1e-6"] / med["skier_lanczos"],
        "relative_error": {k: error(v[0]) for k, v in found.items()},
        "products": {
            "skier_lanczos": found["skier_lanczos"][1],
            "skier_power": found["skier_power"][1],
        },
    }


def _exact_trace(model: torch.nn.Module, split: Split) -> tuple[float, float]:
    """The exact trace, ``Σ_i e_iᵀHe_i`` (one product per weight on the kept gradient graph),
    and the seconds it took."""
    from skier.train.hessian import Hessian

    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    hessian = Hessian(model, split, params, classification=True, batch_size=len(split))
    t0 = time.perf_counter()
    total = 0.0
    for i, p in enumerate(params):
        for j in range(p.numel()):
            unit = [torch.zeros_like(q) for q in params]
            unit[i].view(-1)[j] = 1.0
            total += float(hessian(unit)[i].view(-1)[j])
    return total, time.perf_counter() - t0


def _pyhessian_trace(
    model: torch.nn.Module, split: Split, seed: int, tol: float, eigenvalue: bool = False
) -> dict[str, Any]:
    from pyhessian import hessian

    torch.manual_seed(seed)  # PyHessian's probes come from torch's global generator
    model.eval()
    comp = hessian(model, F.cross_entropy, data=(split.inputs[0], split.targets), cuda=False)
    if eigenvalue:
        comp.eigenvalues(top_n=1)
    samples = comp.trace(maxIter=100, tol=tol)
    model.zero_grad(set_to_none=True)
    se = float(np.std(samples, ddof=1) / math.sqrt(len(samples))) if len(samples) > 1 else None
    return {"trace": float(np.mean(samples)), "probes": len(samples), "se": se}


def _skier_trace(model: torch.nn.Module, split: Split, seed: int, **settings: Any) -> Any:
    settings = {"top_k": 1, "max_iterations": 1, "batch_size": len(split), **settings}
    return sharpness(model, split, settings=SharpnessConfig(seed=seed, **settings))


def bench_trace(
    model: torch.nn.Module,
    split: Split,
    seeds: int,
    samples: int,
    smooth: int | None = None,
    basis: int | None = None,
) -> dict:
    """The ReLU net (``smooth`` None): deflated, plain and exact. A smooth net (tanh): the
    exact trace does not apply; PyHessian against what ``auto`` runs there (the Gauss-Newton
    control variate, ``smooth`` probes) and the deflated estimate forced (``samples`` probes)."""
    exact, exact_s = _exact_trace(model, split)

    # name: what it runs, given the seed (λ1 + trace: the job with the eigenvalue as well)
    def py(seed: int, eigenvalue: bool = False) -> tuple[float, float]:
        r = _pyhessian_trace(model, split, seed, 0.0, eigenvalue)
        return r["trace"], r["se"]

    def sk(seed: int, **settings: Any) -> tuple[float, float]:
        r = _skier_trace(model, split, seed, **settings)
        return r.trace, r.trace_std_error

    # name: what it runs, given the seed (λ1 + trace: the job with the eigenvalue as well)
    variants: dict[str, Callable[[int], tuple[float, float]]] = {
        "pyhessian_100": py,
        "skier_deflated": lambda s: sk(s, trace_samples=samples, trace_method="hutchinson"),
        "skier_plain_100": lambda s: sk(
            s, trace_samples=100, trace_basis=0, trace_method="hutchinson"
        ),
        "skier_exact": lambda s: sk(s, trace_method="exact"),
        "pyhessian_lambda1_100": lambda s: py(s, eigenvalue=True),
        "skier_lambda1_deflated": lambda s: sk(
            s, max_iterations=100, trace_samples=samples, trace_method="hutchinson"
        ),
        "skier_lambda1_exact": lambda s: sk(s, max_iterations=100, trace_method="exact"),
    }
    if smooth is not None:  # no exact trace: what auto runs there, with `smooth` probes
        for name in ("skier_exact", "skier_lambda1_exact"):
            del variants[name]
        size = {} if basis is None else {"trace_basis": basis}  # None: the default (20)
        variants["skier_auto"] = lambda s: sk(s, trace_samples=smooth, **size)
        variants["skier_lambda1_auto"] = lambda s: sk(
            s, max_iterations=100, trace_samples=smooth, **size
        )
    estimates: dict[str, list[float]] = {k: [] for k in variants}
    errors: dict[str, list[float]] = {k: [] for k in variants}
    seconds: dict[str, list[float]] = {k: [] for k in variants}
    defaults: list[dict[str, Any]] = []
    for seed in range(seeds):  # each seed one round, every variant in it
        for name, run in variants.items():
            t0 = time.thread_time()
            value, se = run(seed)
            estimates[name].append(value)
            errors[name].append(se)
            seconds[name].append(time.thread_time() - t0)
        defaults.append(_pyhessian_trace(model, split, seed, 1e-3))

    def rms(values: list[float]) -> float:
        return math.sqrt(statistics.fmean((v - exact) ** 2 for v in values))

    out: dict[str, Any] = {
        "exact": exact,
        "exact_seconds": exact_s,
        "seeds": seeds,
        "skier_probes": samples,
        "rms_error": {k: rms(v) for k, v in estimates.items()},
        # The mean reported variance (SE²): the same quantity as the RMS error², less noisy.
        "rms_std_error": {
            k: math.sqrt(statistics.fmean(e * e for e in v)) for k, v in errors.items()
        },
        "mean_error": {k: statistics.fmean(v) - exact for k, v in estimates.items()},
        "median_cpu_s": {k: statistics.median(v) for k, v in seconds.items()},
        "skier_auto_probes": smooth,
        "skier_auto_basis": basis,
        "skier_auto_method": (
            None
            if smooth is None
            else _skier_trace(model, split, 0, trace_samples=smooth).trace_method
        ),
        "pyhessian_defaults": {
            "probes": [d["probes"] for d in defaults],
            "rms_error": rms([d["trace"] for d in defaults]),
        },
    }
    med, err = out["median_cpu_s"], out["rms_error"]
    pairs = [
        ("pyhessian_100", "skier_deflated"),
        ("pyhessian_lambda1_100", "skier_lambda1_deflated"),
    ]
    if smooth is not None:
        pairs += [("pyhessian_100", "skier_auto"), ("pyhessian_lambda1_100", "skier_lambda1_auto")]
    for ref, mine in pairs:
        out[f"speedup_{mine}"] = med[ref] / med[mine]
        # Time to reach the reference's RMS error: the probes' variance falls as 1/probes.
        out[f"speedup_{mine}_at_equal_rms"] = (med[ref] * err[ref] ** 2) / (
            med[mine] * err[mine] ** 2
        )
        se = out["rms_std_error"]
        out[f"speedup_{mine}_at_equal_se"] = (med[ref] * se[ref] ** 2) / (med[mine] * se[mine] ** 2)
    # The exact (Gauss-Newton) trace has no probe error: its speed-up is the time ratio, at an
    # error (float rounding) far below the reference's.
    if smooth is not None:
        return out
    for ref, mine in (("pyhessian_100", "skier_exact"),
                      ("pyhessian_lambda1_100", "skier_lambda1_exact")):  # fmt: skip
        out[f"speedup_{mine}"] = med[ref] / med[mine]
        out[f"speedup_{mine}_per_round"] = sorted(
            a / b for a, b in zip(seconds[ref], seconds[mine], strict=True)
        )
    out["exact_relative_error"] = max(abs(v - exact) / abs(exact) for v in estimates["skier_exact"])
    return out


# --- LR range test --------------------------------------------------------------------------------


LR_SETTINGS = {"start_lr": 1e-6, "end_lr": 10.0, "num_steps": 100, "beta": 0.95,
               "divergence_factor": 5.0, "suggestion": "steepest"}  # fmt: skip
LR_BATCH, LR_SEED = 64, 0


class _SkierOrder(torch.utils.data.Sampler[list[int]]):
    """skier's batch order (one seeded ``randperm`` an epoch, cut into batches of ``size``, the
    remainder skipped), as a batch sampler: torch-lr-finder's DataLoader still fetches and
    collates the examples one by one, as it does with ``shuffle=True``."""

    def __init__(self, n: int, size: int, seed: int) -> None:
        self.n, self.size, self.seed = n, size, seed

    def __iter__(self) -> Any:
        generator = torch.Generator().manual_seed(self.seed)
        while True:
            order = torch.randperm(self.n, generator=generator)
            for start in range(0, self.n - self.size + 1, self.size):
                yield order[start : start + self.size].tolist()

    def __len__(self) -> int:
        return self.n // self.size


def _torch_lr_finder(model: torch.nn.Module, split: Split) -> dict[str, Any]:
    """torch-lr-finder on the same steps as skier's test: the same optimizer (skier's Adam, as
    ``optim_config={"name": "adam"}`` builds it), batches in the same order, the same lr ramp
    (both ``start · (end/start)^(i/(n-1))``), smoothing factor and divergence threshold (its
    smoothing has no bias correction, so its stop step can differ by a few steps)."""
    from torch_lr_finder import LRFinder  # the reference tool, from bench/.refs

    opt = build_optimizer(model.parameters(), OptimConfig(name="adam", lr=1e-6))
    sampler = _SkierOrder(len(split), LR_BATCH, LR_SEED)
    loader = DataLoader(TensorDataset(split.inputs[0], split.targets), batch_sampler=sampler)
    finder = LRFinder(model, opt, F.cross_entropy, device="cpu")
    finder.range_test(loader, end_lr=10, num_iter=100, step_mode="exp", smooth_f=0.05,
                      diverge_th=5)  # fmt: skip
    lrs, smoothed = finder.history["lr"], finder.history["loss"]
    finder.reset()
    # Its history is the smoothed loss (s_i = 0.05 x_i + 0.95 s_(i-1), s_0 = x_0): the raw
    # losses back, exactly up to float64 rounding.
    raw = [smoothed[0]] + [
        (smoothed[i] - 0.95 * smoothed[i - 1]) / 0.05 for i in range(1, len(smoothed))
    ]
    grads = np.gradient(np.asarray(smoothed), np.log10(np.asarray(lrs)))
    return {"steepest": float(lrs[int(np.argmin(grads))]), "steps": len(lrs), "lrs": lrs,
            "losses": raw}  # fmt: skip


def _agreement(skier: Any, ref: dict[str, Any]) -> dict[str, Any]:
    """The two tools' curves step by step over the steps both took: the lrs, and the raw
    loss of each batch (the same batch at the same weights when the same steps are taken)."""
    common = min(len(skier.lrs), ref["steps"])
    a = np.asarray(skier.losses[:common])
    b = np.asarray(ref["losses"][:common])
    return {
        "steps": {"skier": len(skier.lrs), "torch_lr_finder": ref["steps"]},
        "common_steps": common,
        "lrs_equal": skier.lrs[:common] == ref["lrs"][:common],
        "raw_loss_max_abs_difference": float(np.max(np.abs(a - b))),
        "raw_loss_max_relative_difference": float(np.max(np.abs(a - b) / np.abs(b))),
        "raw_loss_first_step_differing": next(
            (i for i in range(common) if abs(a[i] - b[i]) > 1e-6 * abs(b[i])), None
        ),
        "steepest": {"skier": skier.lr, "torch_lr_finder": ref["steepest"]},
    }


def bench_lr_range(model: torch.nn.Module, split: Split, rounds: int) -> dict[str, Any]:
    train = {"batch_size": LR_BATCH, "seed": LR_SEED}
    times: dict[str, list[float]] = {"skier": [], "torch_lr_finder": []}
    cpu: dict[str, list[float]] = {"skier": [], "torch_lr_finder": []}
    agreement: dict[str, Any] = {}
    # A test takes well under a second: 3x the rounds, and the ratio of each interleaved pair
    # (a pair shares the machine's load), so that one slow moment does not decide the ratio.
    # The first pair is torch-lr-finder's first import and both tools' warm-up: not counted.
    for i in range(3 * rounds + 1):
        c0 = time.thread_time()
        t, r = _timed(lambda: lr_range_test(model, split, optim_config={"name": "adam"},
                                            train_config=train, settings=LR_SETTINGS,
                                            progress=False))  # fmt: skip
        c1 = time.thread_time()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            t2, r2 = _timed(lambda: _torch_lr_finder(model, split))  # its tqdm bar and prints
        c2 = time.thread_time()
        if i > 0:
            times["skier"].append(t)
            times["torch_lr_finder"].append(t2)
            cpu["skier"].append(c1 - c0)
            cpu["torch_lr_finder"].append(c2 - c1)
        agreement = _agreement(r, r2)
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    pairs = [b / a for a, b in zip(times["skier"], times["torch_lr_finder"], strict=True)]
    cpu_pairs = [b / a for a, b in zip(cpu["skier"], cpu["torch_lr_finder"], strict=True)]
    return {"median_s": med, "speedup": med["torch_lr_finder"] / med["skier"],
            "rounds": len(pairs), "speedup_per_round": pairs,
            "speedup_median_of_rounds": statistics.median(pairs),
            "cpu_median_s": cpu_med, "cpu_speedup_per_round": cpu_pairs,
            "cpu_speedup_median_of_rounds": statistics.median(cpu_pairs),
            "agreement": agreement}  # fmt: skip


# --- landscape ------------------------------------------------------------------------------------


def _loss_landscapes(model: torch.nn.Module, split: Split, points: int) -> np.ndarray:
    import copy

    import loss_landscapes
    import loss_landscapes.metrics

    metric = loss_landscapes.metrics.Loss(F.cross_entropy, split.inputs[0], split.targets)
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        return loss_landscapes.random_plane(
            model, metric, distance=1, steps=points, normalization="filter", deepcopy_model=True
        )


def _per_point(model: torch.nn.Module, split: Split, result: Any) -> np.ndarray:
    """The hand-written loop: each point's weights written in, then one full-batch forward."""
    dx, dy = result.directions
    params = [p for p in model.parameters() if p.requires_grad]
    base = [p.detach().clone() for p in params]
    out = np.zeros((len(result.betas), len(result.alphas)))
    model.eval()
    with torch.no_grad():
        for i, b in enumerate(result.betas):
            for j, a in enumerate(result.alphas):
                for p, w, u, v in zip(params, base, dx, dy, strict=True):
                    p.copy_(w + float(a) * u + float(b) * v)
                out[i, j] = float(F.cross_entropy(model(split.inputs[0]), split.targets))
        for p, w in zip(params, base, strict=True):
            p.copy_(w)
    return out


def _cpu_timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall and CPU seconds (the process's, every thread's) of ``fn()``, and its result."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def bench_landscape(model: torch.nn.Module, split: Split, rounds: int, points: int) -> dict:
    cfg = LandscapeConfig(dims=2, points=points)
    names = ("skier", "loss_landscapes", "per_point")
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    agreement = None
    for _ in range(rounds):  # the three interleaved in each round: they share its load
        w, c, result = _cpu_timed(lambda: landscape(model, split, cfg))
        wall["skier"].append(w)
        cpu["skier"].append(c)
        w, c, _ = _cpu_timed(lambda: _loss_landscapes(model, split, points))
        wall["loss_landscapes"].append(w)
        cpu["loss_landscapes"].append(c)
        w, c, loop = _cpu_timed(lambda r=result: _per_point(model, split, r))
        wall["per_point"].append(w)
        cpu["per_point"].append(c)
        surface = np.asarray(result.surface.loss).reshape(loop.shape)
        agreement = float(np.max(np.abs(surface - loop) / np.maximum(np.abs(loop), 1e-12)))
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}

    def ratios(times: dict[str, list[float]], other: str) -> list[float]:
        return [b / a for a, b in zip(times["skier"], times[other], strict=True)]

    return {"median_s": med, "median_cpu_s": med_cpu, "points": f"{points}x{points}",
            "batched_points": result.batched_points,
            "speedup_vs_loss_landscapes_per_round": ratios(wall, "loss_landscapes"),
            "speedup_vs_loss_landscapes": med["loss_landscapes"] / med["skier"],
            "speedup_vs_per_point": med["per_point"] / med["skier"],
            "cpu_speedup_vs_loss_landscapes_per_round": ratios(cpu, "loss_landscapes"),
            "cpu_speedup_vs_per_point_per_round": ratios(cpu, "per_point"),
            "cpu_speedup_vs_loss_landscapes": med_cpu["loss_landscapes"] / med_cpu["skier"],
            "cpu_speedup_vs_per_point": med_cpu["per_point"] / med_cpu["skier"],
            "max_relative_difference_vs_per_point": agreement}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--points", type=int, default=51)
    parser.add_argument("--quick", action="store_true", help="2 rounds, an 11 x 11 grid")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--seeds", type=int, default=20, help="trace: seeds per estimator")
    parser.add_argument("--trace-samples", type=int, default=25, help="skier's trace probes")
    parser.add_argument("--tanh-samples", type=int, default=10,
                        help="trace_tanh: skier's probes under auto (the Gauss-Newton control "
                        "variate); the forced deflated one: --tanh-deflated-samples")  # fmt: skip
    parser.add_argument("--tanh-deflated-samples", type=int, default=60)
    parser.add_argument("--gelu-samples", type=int, default=20)
    parser.add_argument("--gelu-deflated-samples", type=int, default=60)
    parser.add_argument("--other-samples", type=int, default=10,
                        help="trace_cnn, trace_batch_norm: skier's probes under auto")  # fmt: skip
    parser.add_argument("--other-deflated-samples", type=int, default=25)
    parser.add_argument("--other-basis", type=int, default=None,
                        help="trace_cnn, trace_batch_norm: trace_basis under auto")  # fmt: skip
    parser.add_argument("--only", nargs="+",
                        choices=("hessian", "trace", "trace_tanh", "trace_gelu", "trace_cnn",
                                 "trace_batch_norm", "lr_range", "landscape"),
                        help="run these benches only (default: all)")  # fmt: skip
    args = parser.parse_args()
    rounds, points = (2, 11) if args.quick else (args.rounds, args.points)
    model, split = _workload()
    benches: dict[str, Callable[[], Any]] = {
        "hessian": lambda: bench_hessian(model, split, rounds),
        "trace": lambda: bench_trace(model, split, args.seeds, args.trace_samples),
        # The same MLP with tanh, trained the same way: a net where the estimate is the one used.
        "trace_tanh": lambda: bench_trace(
            *_workload("tanh"), args.seeds, args.tanh_deflated_samples, args.tanh_samples
        ),
        # Two GELU hidden layers (64, 64): H − G is no longer zero but in the output layer.
        "trace_gelu": lambda: bench_trace(
            *_workload("gelu", (64, 64)),
            args.seeds,
            args.gelu_deflated_samples,
            args.gelu_samples,
        ),
        # Nets the Gauss-Newton pass does not cover, ending in a Linear: its block exactly.
        "trace_cnn": lambda: bench_trace(
            *_workload(kind="cnn"),
            args.seeds,
            args.other_deflated_samples,
            args.other_samples,
            args.other_basis,
        ),
        "trace_batch_norm": lambda: bench_trace(
            *_workload(kind="batch_norm"),
            args.seeds,
            args.other_deflated_samples,
            args.other_samples,
            args.other_basis,
        ),
        "lr_range": lambda: bench_lr_range(model, split, rounds),
        "landscape": lambda: bench_landscape(model, split, rounds, points),
    }
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "rounds": rounds,
        "load_average": list(os.getloadavg()),
    }
    for name, bench in benches.items():
        if args.only is None or name in args.only:
            results[name] = bench()
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
