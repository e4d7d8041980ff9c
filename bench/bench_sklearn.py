"""SkierClassifier against skorch's NeuralNetClassifier on digits, the same MLP (issue 20).

Both train the same network (64-128-10, ReLU, built from the same seed) with Adam (lr 1e-3),
batch 64, shuffled, no validation split, on one split of scikit-learn's 8x8 digits (75/25,
stratified, inputs standardized on the training rows), one thread.

* **per epoch**: ``fit`` for ``--epochs`` epochs, its wall time / epochs (median of the seeds);
* **to target**: one ``partial_fit`` per epoch (one epoch each), the test accuracy scored after
  each (the scoring not counted): the epochs and training seconds until it first reaches
  ``--target`` (0.97).

skorch is not one of skier's dependencies: install it beside skier with torch pinned
(``pip install torch==2.13.0 skorch``), or run this with bench/.peers's Python
(``bash bench/setup_peers.sh`` installs skorch and skier there).

Usage::

    OMP_NUM_THREADS=1 python bench/bench_sklearn.py [--seeds 0 1 2] [--epochs 30] [--json out]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler


def make_mlp(input_shape: tuple[int, ...] = (64,), output_size: int = 10) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(input_shape[0], 128), torch.nn.ReLU(), torch.nn.Linear(128, output_size)
    )


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)
    scaler = StandardScaler().fit(x_tr)
    f32 = np.float32
    return scaler.transform(x_tr).astype(f32), scaler.transform(x_te).astype(f32), y_tr, y_te


def _skier(seed: int, epochs: int) -> Any:
    from skier.sklearn import SkierClassifier

    return SkierClassifier(
        make_mlp, optim={"name": "adam", "lr": 1e-3},
        train={"epochs": epochs, "batch_size": 64, "seed": seed},
    )  # fmt: skip


def _skorch(seed: int, epochs: int) -> Any:
    from skorch import NeuralNetClassifier

    class Seeded(torch.nn.Module):  # the same initial weights as skier's: seeded, then built
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.net = make_mlp()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    return NeuralNetClassifier(
        Seeded, criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=1e-3,
        batch_size=64, max_epochs=epochs, train_split=None, iterator_train__shuffle=True,
        verbose=0,
    )  # fmt: skip


MAKERS = {"skier": _skier, "skorch": _skorch}


def per_epoch(name: str, seed: int, epochs: int, data: tuple[np.ndarray, ...]) -> dict[str, float]:
    x_tr, x_te, y_tr, y_te = data
    est = MAKERS[name](seed, epochs)
    t0 = time.perf_counter()
    est.fit(x_tr, y_tr)
    seconds = time.perf_counter() - t0
    return {"epoch_ms": 1000 * seconds / epochs, "accuracy": float(est.score(x_te, y_te))}


def to_target(
    name: str, seed: int, epochs: int, target: float, data: tuple[np.ndarray, ...]
) -> dict[str, Any]:
    x_tr, x_te, y_tr, y_te = data
    est = MAKERS[name](seed, 1)
    classes = np.unique(y_tr)
    trained, reached = 0.0, None
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        est.partial_fit(x_tr, y_tr, classes=classes)
        trained += time.perf_counter() - t0
        if reached is None and est.score(x_te, y_te) >= target:
            reached = {"epochs": epoch, "seconds": trained}
    return {"reached": reached, "seconds_all": trained, "final": float(est.score(x_te, y_te))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")  # skorch's notes about its defaults
    data = _data()
    out: dict[str, Any] = {"seeds": args.seeds, "epochs": args.epochs, "target": args.target}
    for name in MAKERS:
        MAKERS[name](0, 1).fit(data[0][:64], data[2][:64])  # warm-up: imports, first calls
        runs = [per_epoch(name, s, args.epochs, data) for s in args.seeds]
        targets = [to_target(name, s, args.epochs, args.target, data) for s in args.seeds]
        reached = [t["reached"] for t in targets if t["reached"] is not None]
        out[name] = {"per_epoch": runs, "to_target": targets}
        ms = statistics.median(r["epoch_ms"] for r in runs)
        acc = statistics.median(r["accuracy"] for r in runs)
        line = f"{name:7s} fit: {ms:6.1f} ms/epoch, test accuracy {acc:.3f} after {args.epochs}"
        if reached:
            epochs = statistics.median(r["epochs"] for r in reached)
            secs = statistics.median(r["seconds"] for r in reached)
            line += (
                f"; partial_fit: {args.target:.0%} in {len(reached)}/{len(targets)} seeds, "
                f"median {epochs:g} epochs, {secs:.2f} s"
            )
        print(line, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
