"""skier's diagnostics against the reference tools people use, same model, same data, same run.

* **Hessian** (top-3 eigenvalues, then the trace): skier's :func:`skier.diagnostics.sharpness`
  (Lanczos, its default, and power iteration) against PyHessian 0.1 (``hessian(...)``,
  ``eigenvalues(top_n=3)``, ``trace()``), both on the whole set as one batch, at the same
  tolerance (1e-3 for PyHessian's power iteration, skier's default 1e-4 residual for Lanczos).
  Agreement: each top eigenvalue against a tightly converged reference (skier's Lanczos at
  1e-8, checked against PyHessian at 1e-8). The trace: the same number of Rademacher probes
  (100) in each; agreement within their standard errors.
* **LR range test**: skier's :func:`skier.diagnostics.lr_range.lr_range_test` against
  torch-lr-finder 0.2.2 (``LRFinder.range_test``), Adam, 100 exponential steps from 1e-6 to 10,
  batch 64, the same initial weights; agreement: the suggested (steepest-descent) lr.
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
import datetime as dt
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

from skier.config import DataConfig, LandscapeConfig, ModelConfig, SharpnessConfig
from skier.data import Split, load_data
from skier.diagnostics.landscape import landscape
from skier.diagnostics.lr_range import lr_range_test
from skier.diagnostics.sharpness import sharpness
from skier.models import build_model


def _workload() -> tuple[torch.nn.Module, Split]:
    data = load_data(DataConfig())
    assert data.val is not None
    x = torch.cat([data.train.inputs[0], data.val.inputs[0]])
    y = torch.cat([data.train.targets, data.val.targets])
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_sizes=[128]), input_shape=(64,), output_size=10)
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
    trace_times: dict[str, list[float]] = {"skier": [], "pyhessian": []}
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
        # The trace alone: skier's with top_k's products subtracted is not separable, so time
        # each tool's trace with its eigenvalue part as small as it goes (one eigenvalue).
        t0 = time.perf_counter()
        st = sharpness(
            model,
            split,
            settings=SharpnessConfig(
                top_k=1, max_iterations=1, trace_samples=100, batch_size=len(split)
            ),
        )
        trace_times["skier"].append(time.perf_counter() - t0)
        t, pt = _timed(lambda: _pyhessian_trace(model, split))
        trace_times["pyhessian"].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    tmed = {k: statistics.median(v) for k, v in trace_times.items()}
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
        "trace": {
            "skier": st.trace,
            "skier_se": st.trace_std_error,
            "pyhessian": pt["trace"],
            "pyhessian_se": pt["trace_se"],
            "median_s": tmed,
            "speedup": tmed["pyhessian"] / tmed["skier"],
        },
    }


def _pyhessian_trace(model: torch.nn.Module, split: Split) -> dict[str, Any]:
    from pyhessian import hessian

    model.eval()
    comp = hessian(model, F.cross_entropy, data=(split.inputs[0], split.targets), cuda=False)
    comp.eigenvalues(top_n=1, maxIter=1)
    samples = comp.trace(maxIter=100, tol=0.0)
    model.zero_grad(set_to_none=True)
    return {"trace": float(np.mean(samples)),
            "trace_se": float(np.std(samples, ddof=1) / math.sqrt(len(samples)))}  # fmt: skip


# --- LR range test --------------------------------------------------------------------------------


def _torch_lr_finder(model: torch.nn.Module, split: Split) -> dict[str, Any]:
    from torch_lr_finder import LRFinder  # the reference tool, from bench/.refs

    opt = torch.optim.Adam(model.parameters(), lr=1e-6)
    loader = DataLoader(TensorDataset(split.inputs[0], split.targets), batch_size=64,
                        shuffle=True, generator=torch.Generator().manual_seed(0))  # fmt: skip
    finder = LRFinder(model, opt, F.cross_entropy, device="cpu")
    finder.range_test(loader, end_lr=10, num_iter=100, step_mode="exp", smooth_f=0.05,
                      diverge_th=5)  # fmt: skip
    lrs, losses = finder.history["lr"], finder.history["loss"]
    finder.reset()
    grads = np.gradient(np.asarray(losses), np.log10(np.asarray(lrs)))
    return {"steepest": float(lrs[int(np.argmin(grads))]), "steps": len(lrs)}


def bench_lr_range(model: torch.nn.Module, split: Split, rounds: int) -> dict[str, Any]:
    settings = {"start_lr": 1e-6, "end_lr": 10.0, "num_steps": 100, "beta": 0.95,
                "divergence_factor": 5.0, "suggestion": "steepest"}  # fmt: skip
    train = {"batch_size": 64}
    times: dict[str, list[float]] = {"skier": [], "torch_lr_finder": []}
    found: dict[str, Any] = {}
    # A test takes well under a second: 3x the rounds, and the ratio of each interleaved pair
    # (a pair shares the machine's load), so that one slow moment does not decide the ratio.
    for _ in range(3 * rounds):
        t, r = _timed(lambda: lr_range_test(model, split, optim_config={"name": "adam"},
                                            train_config=train, settings=settings,
                                            progress=False))  # fmt: skip
        times["skier"].append(t)
        found["skier"] = {"steepest": r.lr, "steps": len(r.lrs)}
        t, r2 = _timed(lambda: _torch_lr_finder(model, split))
        times["torch_lr_finder"].append(t)
        found["torch_lr_finder"] = r2
    med = {k: statistics.median(v) for k, v in times.items()}
    pairs = [b / a for a, b in zip(times["skier"], times["torch_lr_finder"], strict=True)]
    return {"median_s": med, "speedup": med["torch_lr_finder"] / med["skier"],
            "rounds": len(pairs), "speedup_per_round": pairs,
            "speedup_median_of_rounds": statistics.median(pairs), "suggested": found}  # fmt: skip


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
    parser.add_argument("--only", nargs="+", choices=["hessian", "lr_range", "landscape"],
                        help="run only these benches (default: all)")  # fmt: skip
    args = parser.parse_args()
    rounds, points = (2, 11) if args.quick else (args.rounds, args.points)
    model, split = _workload()
    benches: dict[str, Callable[[], dict[str, Any]]] = {
        "hessian": lambda: bench_hessian(model, split, rounds),
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
    for name, run in benches.items():
        if args.only is None or name in args.only:
            results[name] = run()
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
