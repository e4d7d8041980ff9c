"""Mode connectivity on digits: the issue's acceptance measurement.

Two runs of an MLP 64-64-64-10 (Adam, lr 3e-3, 30 epochs, batch 128) from seeds 0 and 1 on the
default digits split; then a quadratic Bezier curve (one bend) is trained between them for 30
epochs with the reference schedule, and both paths are evaluated at 61 values of t (train and
test loss and error; batch-norm statistics re-estimated at every t). Reported: the train-loss
barrier of the straight line and of the curve, the reduction, the ensemble accuracies, and the
seconds for the whole (endpoints + curve + evaluation + the 21 x 21 plane). Run with and without
batch norm.

Usage::

    python bench/bench_connectivity.py [--json bench/results/connectivity.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from typing import Any

import torch

from skier.config import ConnectConfig, DataConfig, ModelConfig
from skier.data import load_data
from skier.diagnostics.connectivity import connect
from skier.models import build_model
from skier.train import fit


def _case(batch_norm: bool) -> dict[str, Any]:
    data = load_data(DataConfig())
    config = ModelConfig(hidden_sizes=[64, 64, 64], batch_norm=batch_norm)
    t0 = time.perf_counter()
    ends = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model(config, input_shape=data.input_shape, output_size=10)
        fit(model, data, epochs=30, lr=3e-3, seed=seed, progress="off")
        ends.append(model)
    endpoints_s = time.perf_counter() - t0
    result = connect(
        ends[0], ends[0], ends[1], data, ConnectConfig(), optim_config={"name": "adam", "lr": 3e-3}
    )
    total = time.perf_counter() - t0
    s = result.summary
    return {
        "batch_norm": batch_norm,
        "line_train_loss_barrier": s["line_train_loss_barrier"],
        "curve_train_loss_barrier": s["curve_train_loss_barrier"],
        "barrier_reduction": s["barrier_reduction"],
        "line_test_error_max": s["line"]["test_error_max"],
        "curve_test_error_max": s["curve"]["test_error_max"],
        "ensemble": result.ensemble,
        "endpoints_s": endpoints_s,
        "curve_training_s": result.training_seconds,
        "connect_s": result.seconds,
        "total_s": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    cases = [_case(False), _case(True)]
    for c in cases:
        print(
            f"batch_norm={c['batch_norm']!s:5}  line barrier {c['line_train_loss_barrier']:.4f}  "
            f"curve barrier {c['curve_train_loss_barrier']:.4f}  reduction "
            f"{c['barrier_reduction']:.1%}  ensemble acc {c['ensemble']['curve_ensemble']:.4f} "
            f"(ends {c['ensemble']['start']:.4f}/{c['ensemble']['end']:.4f})  "
            f"total {c['total_s']:.1f} s (endpoints {c['endpoints_s']:.1f}, curve training "
            f"{c['curve_training_s']:.1f}, connect {c['connect_s']:.1f})"
        )
    if args.json:
        record = {
            "date": dt.date.today().isoformat(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "cases": cases,
        }
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=2)


if __name__ == "__main__":
    main()
