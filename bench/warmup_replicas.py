"""Lesson 10's warm-up experiment over seeds, thread counts and perturbed replicas.

Whether a run diverges is a yes/no outcome: a margin on the other checks does not protect it.
This runs the lesson's deep residual MLP (16 hidden layers of 64, no normalization, plain SGD,
cosine over 12 epochs, batches of 64) at each lr and warm-up length, on each seed, and on
replicas of each seed whose initial weights are scaled by 1 + 1e-6 noise (what another CPU's
rounding does to a trajectory), and reports per set-up how many runs diverged, the smallest
largest-epoch loss (the no-warm-up check) and the largest final training loss.

    python bench/warmup_replicas.py --lrs 0.12 0.2 --warmups 0 6 --seeds 0-19 --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any


def _seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.12])
    parser.add_argument("--warmups", type=int, nargs="+", default=[0, 6])
    parser.add_argument("--seeds", type=_seeds, default=_seeds("0-19"), help="e.g. 0-19")
    parser.add_argument("--replicas", type=int, default=3, help="runs per seed (1: unperturbed)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path, default=None, help="write every run here")
    args = parser.parse_args(argv)

    import torch

    from skier.lessons._tools import digits, mlp
    from skier.train import evaluate, fit

    data = digits()
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    for threads in args.threads:
        torch.set_num_threads(threads)
        for lr in args.lrs:
            for warmup in args.warmups:
                for seed in args.seeds:
                    for replica in range(args.replicas):
                        model = mlp(data, [64] * 16, seed=seed, residual=True)
                        if replica:
                            noise = torch.Generator().manual_seed(replica)
                            with torch.no_grad():
                                for p in model.parameters():
                                    p.mul_(1 + 1e-6 * torch.randn(p.shape, generator=noise))
                        result = fit(model, data.train, progress="off", device="cpu",
                                     optimizer="sgd", lr=lr, epochs=12, batch_size=64, seed=seed,
                                     schedule={"name": "cosine", "interval": "step",
                                               "warmup_epochs": warmup})  # fmt: skip
                        losses = [v if math.isfinite(v) else 1e6 for v in
                                  result.history.column("loss")]  # fmt: skip
                        runs.append({
                            "threads": threads, "lr": lr, "warmup": warmup, "seed": seed,
                            "replica": replica, "diverged": result.stop_reason is not None,
                            "largest_epoch_loss": max(losses),
                            "final_loss": evaluate(model, data.train)["loss"],
                        })  # fmt: skip
    print(f"{'lr':>5} {'warm-up':>7} {'runs':>5} {'diverged':>8} {'min largest':>11} "
          f"{'max final (not diverged)':>24}")  # fmt: skip
    for lr in args.lrs:
        for warmup in args.warmups:
            group = [r for r in runs if r["lr"] == lr and r["warmup"] == warmup]
            finals = [r["final_loss"] for r in group if not r["diverged"]]
            print(f"{lr:5g} {warmup:7d} {len(group):5d} {sum(r['diverged'] for r in group):8d} "
                  f"{min(r['largest_epoch_loss'] for r in group):11.4g} "
                  f"{max(finals) if finals else float('nan'):24.4g}")  # fmt: skip
    print(f"({time.perf_counter() - started:.0f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
