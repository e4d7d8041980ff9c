"""Benchmark the 2-D loss landscape: skier's in-memory grid against a per-point DataLoader loop.

The workload is the issue's: an MLP 64-64-64-10 on scikit-learn's digits, evaluated on 1,437
training examples (train + validation splits of the default 60/20/20 split, i.e. the 80% that
is not test), on a 51 x 51 grid over [-1, 1]^2 with filter-normalized directions.

Measured, interleaved (A B A B ...) so machine noise hits every variant alike, each ``--rounds``
times, medians and min-max reported:

* ``skier``: :func:`skier.diagnostics.landscape.landscape` with ``batch_points`` = 1 (one point
  at a time, weights written in place) and with several points per vmap'd forward pass;
* ``dataloader``: the loop people write by hand — for each point, load the weights into the
  model, then iterate a ``DataLoader`` (batch 128) over a ``TensorDataset`` summing loss and
  errors. It is timed on ``--loader-rows`` rows of the grid and scaled to the whole grid
  (per-point cost is the same on every row).

Usage::

    python bench/bench_landscape.py                  # the full benchmark (a few minutes)
    python bench/bench_landscape.py --quick          # a smoke test
    python bench/bench_landscape.py --json bench/results/landscape.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from skier.config import DataConfig, LandscapeConfig, ModelConfig
from skier.data import Split, load_data
from skier.diagnostics.landscape import landscape, random_direction
from skier.models import build_model


def _workload() -> tuple[torch.nn.Module, Split]:
    data = load_data(DataConfig())
    assert data.val is not None
    x = torch.cat([data.train.inputs[0], data.val.inputs[0]])
    y = torch.cat([data.train.targets, data.val.targets])
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden_sizes=[64, 64, 64]), input_shape=(64,), output_size=10)
    # A few epochs of training so the grid is around a real minimum (speed does not depend on it).
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(30):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, Split((x,), y)


def _skier(model: torch.nn.Module, split: Split, points: int, batch_points: int) -> float:
    cfg = LandscapeConfig(dims=2, points=points)
    t0 = time.perf_counter()
    landscape(model, split, cfg, batch_points=batch_points)
    return time.perf_counter() - t0


def _dataloader(model: torch.nn.Module, split: Split, points: int, rows: int) -> float:
    """Seconds for the whole grid, from ``rows`` rows of the hand-written loop."""
    g = torch.Generator().manual_seed(0)
    dx = random_direction(model, generator=g)
    dy = random_direction(model, generator=g)
    base = [p.detach().clone() for p in model.parameters()]
    loader = DataLoader(TensorDataset(split.inputs[0], split.targets), batch_size=128)
    alphas = torch.linspace(-1, 1, points)
    model.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        for beta in alphas[:rows]:
            for alpha in alphas:
                for p, b, d, e in zip(model.parameters(), base, dx, dy, strict=True):
                    p.copy_(b + alpha * d + beta * e)
                loss, wrong = 0.0, 0
                for xb, yb in loader:
                    out = model(xb)
                    loss += F.cross_entropy(out, yb, reduction="sum").item()
                    wrong += int((out.argmax(1) != yb).sum())
        for p, b in zip(model.parameters(), base, strict=True):
            p.copy_(b)
    return (time.perf_counter() - t0) * points / rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=51)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-points", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--loader-rows", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.quick:
        args.points, args.rounds, args.batch_points, args.loader_rows = 11, 1, [1, 4], 1
    if args.threads:
        torch.set_num_threads(args.threads)
    model, split = _workload()
    variants = [f"skier-b{k}" for k in args.batch_points] + ["dataloader"]
    times: dict[str, list[float]] = {v: [] for v in variants}
    for round_ in range(args.rounds):
        order = variants if round_ % 2 == 0 else variants[::-1]
        for name in order:
            if name == "dataloader":
                seconds = _dataloader(model, split, args.points, args.loader_rows)
            else:
                seconds = _skier(model, split, args.points, int(name.removeprefix("skier-b")))
            times[name].append(seconds)
            print(f"round {round_ + 1} {name:12s} {seconds:8.2f} s", flush=True)
    medians = {k: statistics.median(v) for k, v in times.items()}
    best = min((k for k in medians if k != "dataloader"), key=medians.__getitem__)
    print(f"\n{args.points}x{args.points} grid, {len(split)} examples, threads "
          f"{torch.get_num_threads()}")  # fmt: skip
    for name in variants:
        ratio = medians["dataloader"] / medians[name]
        print(
            f"{name:12s} median {medians[name]:7.2f} s  (min {min(times[name]):.2f}, "
            f"max {max(times[name]):.2f})  dataloader/this {ratio:5.1f}x"
        )
    print(f"fastest skier variant: {best}")
    if args.json:
        record: dict[str, Any] = {
            "date": dt.date.today().isoformat(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "points": args.points,
            "examples": len(split),
            "seconds": times,
            "medians": medians,
            "fastest": best,
        }
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=2)


if __name__ == "__main__":
    main()
