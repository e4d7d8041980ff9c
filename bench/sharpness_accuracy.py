"""How close ``SharpnessTracker``'s capped, warm-started λ1 is to a converged λ1 at W1.

W1 (``bench_fit``): MLP 784-256-128-10, Adam lr 1e-3, batch 128, synthetic 60,000 x 784. A fit
with ``SharpnessTracker(every=100)`` at its defaults (subset 256, first record ≤ 20 products,
later ones ≤ 3) runs ``--steps`` steps; right after each record a second callback measures λ1
by Lanczos to a 1e-6 residual on the same subset (same seed) and on ``--large`` examples, and
the CPU time (``time.process_time``) of the training steps and of the records.

Usage::

    python bench/sharpness_accuracy.py --steps 2000 --threads 1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench_fit import LR, SEED, make_data, make_model
from skier.train import Callback, SharpnessTracker, TrainState, fit
from skier.train.callbacks.sharpness import _measuring
from skier.train.hessian import Hessian, lanczos, seeded_subset


class Reference(Callback):
    """After each of ``tracker``'s records: converged λ1 on its subset and on a larger one."""

    stateful = False

    def __init__(self, tracker: SharpnessTracker, train: Any, large: int, stop: int) -> None:
        self.tracker, self.stop = tracker, stop
        self.subsets = {
            "same": seeded_subset(tracker.data, tracker.subset, tracker.seed),
            "large": seeded_subset(train, large, tracker.seed),
        }
        self.rows: list[dict[str, float]] = []

    def on_batch_end(self, state: TrainState) -> None:
        if state.step % self.tracker.every != 0 or not self.tracker._pending:
            return
        step, value, products, converged = self.tracker._pending[-1]
        model = state.measured_model()
        params = [p for p in model.parameters() if p.requires_grad]
        row = {"step": step, "tracked": value, "products": products, "converged": converged}
        for name, subset in self.subsets.items():
            generator = torch.Generator().manual_seed(1)
            start = [torch.randn(p.shape, generator=generator) for p in params]
            with _measuring(model):
                hessian = Hessian(model, subset, params, classification=True, batch_size=4096)
                pair = lanczos(hessian, start, count=1, tolerance=1e-6, max_products=150)[0]
            row[name] = pair.value
        row["ratio_same"] = row["tracked"] / row["same"]
        row["ratio_large"] = row["tracked"] / row["large"]
        self.rows.append(row)
        print(json.dumps({k: round(v, 4) for k, v in row.items()}), flush=True)
        if step >= self.stop:
            state.request_stop(f"{self.stop} steps measured")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--large", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, _ = make_data(60_000, 0)
    tracker = SharpnessTracker(train, every=100, seed=SEED)
    reference = Reference(tracker, train, args.large, args.steps)
    epochs = -(-args.steps // 469)
    fit(
        make_model(), train, epochs=epochs, batch_size=128, optimizer="adam", lr=LR,
        callbacks=[tracker, reference], progress="off", seed=SEED, device="cpu",
    )  # fmt: skip
    same = [r["ratio_same"] for r in reference.rows]
    large = [r["ratio_large"] for r in reference.rows]
    summary = {
        "records": len(same),
        "tracked_over_same_subset": {
            "median": statistics.median(same), "min": min(same), "max": max(same),
        },
        "tracked_over_large_subset": {
            "median": statistics.median(large), "min": min(large), "max": max(large),
        },
        "converged_records": sum(r["converged"] for r in reference.rows),
    }  # fmt: skip
    print(json.dumps(summary, indent=2))
    if args.json:
        out = {"settings": vars(args) | {"json": str(args.json)}, "summary": summary,
               "rows": reference.rows, "date": time.strftime("%Y-%m-%d")}  # fmt: skip
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
