"""What ``train.metrics`` costs (issue 20): ``fit`` at W1's shapes with the built-in metrics
against ``fit`` without them, in one process, interleaved over rounds (none, metrics, metrics,
none, ...), the ratio taken within each round and its median reported.

Shapes (W1-ish: half its examples, so that it runs in about a minute on one thread): the MLP
784-256-128-10 with Adam at batch 128, on synthetic 784-feature, 10-class data — ``--train``
training examples and a validation split a quarter of that size, evaluated every epoch. An
epoch's time is the loop's ``epoch_time``: the training pass and the validation pass (where the
metrics are).

Metrics: accuracy, top_5_accuracy, f1_macro, precision, recall, balanced_accuracy, auroc (the
classification built-ins; AUROC keeps the scores of the split and ranks them once).

Epoch times on a shared machine are noisy, so the metrics' cost is also measured directly: the
validation pass with and without them (``evaluate_split``), alternated, the fastest of each; that
difference over the fastest plain epoch is the second ratio (the less noisy one).

Also measured: the per-batch training loss call (``Setup.loss`` through the loss registry)
against the plain ``F.cross_entropy`` it wraps, in microseconds, beside a W1 training step.

Target: the metrics cost at most 1% of a W1 epoch (ratio <= 1.01).

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/bench_metrics.py \\
        --json bench/results/DATE-metrics.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

METRICS = [
    "accuracy",
    "top_5_accuracy",
    "f1_macro",
    "precision",
    "recall",
    "balanced_accuracy",
    "auroc",
]


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)
    )


def _epochs(train: Any, val: Any, metrics: list[str], epochs: int) -> list[float]:
    from skier.train import fit

    torch.manual_seed(0)
    result = fit(
        _model(),
        train,
        val,
        epochs=epochs + 1,
        batch_size=128,
        lr=1e-3,
        seed=0,
        progress="off",
        device="cpu",
        metrics=metrics,
    )
    return list(result.history.column("epoch_time")[1:])  # the first epoch warms up


def _eval_pass(val: Any, repeats: int = 25) -> dict[str, float]:
    """The validation pass alone, with and without the metrics (and with all but AUROC, the one
    that sorts the split's scores), alternated; fastest of each."""
    from skier.data.types import Split
    from skier.train.metrics import evaluate_split
    from skier.train.scoring import Scoring

    torch.manual_seed(0)
    model, split = _model(), Split((val[0],), val[1])
    but_auroc = [m for m in METRICS if m != "auroc"]
    scorings = {
        "none": None,
        "metrics": Scoring(METRICS, kind="classes"),
        "no_auroc": Scoring(but_auroc, kind="classes"),
    }
    times: dict[str, list[float]] = {name: [] for name in scorings}
    for _ in range(repeats):
        for name, sc in scorings.items():
            t0 = time.perf_counter()
            evaluate_split(model, split, classification=True, scoring=sc)
            times[name].append(time.perf_counter() - t0)
    return {f"eval_{name}_s": min(t) for name, t in times.items()}


def _loss_call(repeats: int = 2000) -> dict[str, float]:
    """Per call: the registry's cross-entropy against the functional one, and a W1 step."""
    import torch.nn.functional as F

    from skier.train.losses import build_loss

    out, y = torch.randn(128, 10, requires_grad=True), torch.randint(0, 10, (128,))
    built = build_loss("cross_entropy")
    plain = lambda o, t: F.cross_entropy(o, t)  # noqa: E731 - what make_loss returned before
    times: dict[str, list[float]] = {"plain": [], "registry": []}
    for _ in range(5):
        for name, fn in (("plain", plain), ("registry", built)):
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn(out, y)
            times[name].append((time.perf_counter() - t0) / repeats * 1e6)
    model, x = _model(), torch.randn(128, 784)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(50):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
        steps.append((time.perf_counter() - t0) / 50 * 1e6)
    plain_us, registry_us = min(times["plain"]), min(times["registry"])
    step_us = statistics.median(steps)
    return {
        "plain_loss_us": plain_us,
        "registry_loss_us": registry_us,
        "w1_step_us": step_us,
        "step_ratio": (step_us + registry_us - plain_us) / step_us,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=30000, help="training examples")
    parser.add_argument("--epochs", type=int, default=1, help="measured epochs per fit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(784, 10, generator=g)
    x = torch.randn(args.train + args.train // 4, 784, generator=g)
    y = (x @ teacher + torch.randn(len(x), 10, generator=g)).argmax(1)
    train, val = (x[: args.train], y[: args.train]), (x[args.train :], y[args.train :])
    rounds = []
    for r in range(args.rounds):
        order = [[], METRICS] if r % 2 == 0 else [METRICS, []]
        medians = {}
        for metrics in order:
            medians["metrics" if metrics else "none"] = statistics.median(
                _epochs(train, val, metrics, args.epochs)
            )
        rounds.append({**medians, "ratio": medians["metrics"] / medians["none"]})
        print(
            f"round {r + 1}: none {medians['none']:.3f} s, metrics {medians['metrics']:.3f} s, "
            f"ratio {rounds[-1]['ratio']:.4f}",
            flush=True,
        )
    ratio = statistics.median(r["ratio"] for r in rounds)
    fastest = min(r["none"] for r in rounds)
    passes = _eval_pass(val)
    added = passes["eval_metrics_s"] - passes["eval_none_s"]
    direct = (fastest + added) / fastest
    no_auroc = (fastest + passes["eval_no_auroc_s"] - passes["eval_none_s"]) / fastest
    loss = _loss_call()
    print(f"epochs: median ratio (metrics / none) {ratio:.4f} (noisy)")
    print(
        f"validation pass: none {passes['eval_none_s'] * 1e3:.1f} ms, metrics "
        f"{passes['eval_metrics_s'] * 1e3:.1f} ms: +{added * 1e3:.2f} ms on a "
        f"{fastest * 1e3:.0f} ms epoch = ratio {direct:.4f}; target <= 1.01: "
        f"{'met' if direct <= 1.01 else 'missed'}; without auroc {no_auroc:.4f}"
    )
    print(
        f"loss call: plain {loss['plain_loss_us']:.1f} us, registry "
        f"{loss['registry_loss_us']:.1f} us; W1 step {loss['w1_step_us']:.0f} us "
        f"(ratio {loss['step_ratio']:.4f})"
    )
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "train": args.train,
        "val": args.train // 4,
        "metrics": METRICS,
        "rounds": rounds,
        "median_ratio": ratio,
        **passes,
        "direct_ratio": direct,
        "direct_ratio_without_auroc": no_auroc,
        "loss_call": loss,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
