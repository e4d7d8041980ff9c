"""The built-in metrics' own work in one W1 validation pass (issue 20), without the model:
``Accumulator.update`` on the two batches of 4,096 and 3,404 logits ``evaluate_split`` feeds it
and ``compute`` at the end, for the seven classification built-ins of ``bench_metrics.py``,
with AUROC's rank sums as committed and as they were before (``_previous_rank_sums``: a search
of each positive in its own order and both bounds always), interleaved, fastest of ``--repeats``.

Less exposed to a loaded machine than ``bench_metrics.py``'s direct measure (which subtracts two
whole validation passes): each timing is ~1-3 ms of host work.

Usage::

    OMP_NUM_THREADS=2 PYTHONPATH=src python bench/profile_metric_work.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

import skier.train.scoring as scoring
from skier.train.scoring import Scoring

METRICS = ["accuracy", "top_5_accuracy", "f1_macro", "precision", "recall",
           "balanced_accuracy", "auroc"]  # fmt: skip


def _previous_rank_sums(columns: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """``_positive_rank_sums`` as of commit 00b452c, for the comparison."""
    columns, positive = np.ascontiguousarray(columns), np.ascontiguousarray(positive)
    ordered = np.sort(columns, axis=1)
    sums = np.empty(columns.shape[0], dtype=np.float64)
    for row, (values, hits) in enumerate(zip(columns, positive, strict=True)):
        chosen = values[hits]
        left = np.searchsorted(ordered[row], chosen, "left").sum(dtype=np.float64)
        right = np.searchsorted(ordered[row], chosen, "right").sum(dtype=np.float64)
        sums[row] = (left + right + chosen.size) / 2
    return sums


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    out, y = torch.randn(7500, 10, generator=g) * 3, torch.randint(0, 10, (7500,), generator=g)
    current = scoring._positive_rank_sums
    variants = {
        "six": (Scoring(METRICS[:-1], kind="classes"), current),
        "seven_previous_auroc": (Scoring(METRICS, kind="classes"), _previous_rank_sums),
        "seven": (Scoring(METRICS, kind="classes"), current),
    }
    times: dict[str, dict[str, list[float]]] = {k: {"update": [], "compute": []} for k in variants}
    for _ in range(args.repeats):
        for name, (sc, rank_sums) in variants.items():
            scoring._positive_rank_sums = rank_sums
            t0 = time.perf_counter()
            acc = sc.start(torch.device("cpu"))
            for lo in range(0, 7500, 4096):
                acc.update(out[lo : lo + 4096], y[lo : lo + 4096])
            t1 = time.perf_counter()
            acc.compute()
            t2 = time.perf_counter()
            times[name]["update"].append(t1 - t0)
            times[name]["compute"].append(t2 - t1)
    scoring._positive_rank_sums = current
    record = {
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        **{
            f"{k}_{part}_ms": min(v) * 1e3
            for k, parts in times.items()
            for part, v in parts.items()
        },
    }
    for name in variants:
        u, c = record[f"{name}_update_ms"], record[f"{name}_compute_ms"]
        print(f"{name}: update {u:.3f} ms + compute {c:.3f} ms = {u + c:.3f} ms")
    print(f"threads {record['threads']}, load average {record['load_average']}")
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
