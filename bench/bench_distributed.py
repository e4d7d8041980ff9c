"""2-process data-parallel scaling of ``skier.train.fit`` on CPU (gloo) against one process.

The workload of ``bench_fit.py``: synthetic 60,000 x 784, 10 classes, an MLP 784-256-128-10,
Adam (lr 1e-3), global batch 128, no validation. Three set-ups, each with a fair share of the
cores:

- ``1 process x T threads`` (T = all cores): what a single-process run gets;
- ``2 processes x T/2 threads``: ``fit(..., distributed=group)``, each rank half of every
  global batch, DDP's gradient all-reduce over gloo;
- ``1 process x T/2 threads``: what one rank's compute alone would cost (a reference).

Each call trains ``1 + epochs`` epochs and the first (warm-up) is discarded; the per-epoch times
are ``history["epoch_time"]`` (rank 0's for the distributed run). Set-ups are interleaved over
``rounds`` so machine noise hits all of them; the share of the machine other processes took
during each call is recorded (from ``/proc/stat``), as in ``bench_fit.py``.

Usage::

    python bench/bench_distributed.py                    # 3 rounds x 2 epochs (a few minutes)
    python bench/bench_distributed.py --quick            # a smoke test
    python bench/bench_distributed.py --json bench/results/ddp.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from skier.data import Split
from skier.data.datasets import synthetic
from skier.models import MLP
from skier.train import fit
from skier.train.distributed import LaunchInfo, distributed_session

FEATURES, CLASSES, HIDDEN, LR, SEED = 784, 10, (256, 128), 1e-3, 0
_HZ = os.sysconf("SC_CLK_TCK")
_NCPU = os.cpu_count() or 1


def _busy_seconds() -> float:
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _HZ


def _own_children_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def make_data(samples: int) -> Split:
    raw = synthetic(samples=samples, features=FEATURES, classes=CLASSES, seed=SEED)
    return Split((torch.from_numpy(raw.x_num).float(),), torch.from_numpy(raw.y).long())


def _train(data: Split, epochs: int, batch: int, group: Any = None) -> list[float]:
    torch.manual_seed(SEED)
    model = MLP(FEATURES, CLASSES, hidden_sizes=HIDDEN)
    result = fit(model, data, optimizer="adam", lr=LR, epochs=1 + epochs, batch_size=batch,
                 seed=SEED, device="cpu", progress="off", distributed=group)  # fmt: skip
    return result.history.column("epoch_time")[1:]


def _rank(
    rank: int, init: str, out: str, samples: int, epochs: int, batch: int, threads: int
) -> None:
    torch.set_num_threads(threads)
    data = make_data(samples)
    launch = LaunchInfo(rank, 2, init_method=f"file://{init}", timeout_s=600)
    with distributed_session(launch, "cpu") as group:
        times = _train(data, epochs, batch, group)
    if rank == 0:
        Path(out).write_text(json.dumps(times))


def run_distributed(samples: int, epochs: int, batch: int, threads: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        init, out = Path(tmp) / "rendezvous", Path(tmp) / "times.json"
        mp.start_processes(_rank, args=(str(init), str(out), samples, epochs, batch, threads),
                           nprocs=2, start_method="spawn")  # fmt: skip
        return list(json.loads(out.read_text()))


def measured(fn: Any, *args: Any) -> tuple[list[float], float, float]:
    busy0, own0, t0 = _busy_seconds(), _own_children_seconds(), time.perf_counter()
    times = fn(*args)
    wall = time.perf_counter() - t0
    others = (_busy_seconds() - busy0) - (_own_children_seconds() - own0)
    return times, wall, max(others, 0.0) / max(wall * _NCPU, 1e-9)


def run_single(samples: int, epochs: int, batch: int, threads: int) -> list[float]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train(make_data(samples), epochs, batch)
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=2, help="measured epochs per call")
    parser.add_argument("--batch-size", type=int, default=128, help="the global batch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="6,000 samples, 1 round")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.samples, args.rounds, args.epochs = 6_000, 1, 1
    cores = _NCPU
    half = max(cores // 2, 1)
    setups = {
        f"1 process x {cores} threads": (run_single, cores),
        f"2 processes x {half} thread(s)": (run_distributed, half),
        f"1 process x {half} thread(s)": (run_single, half),
    }
    results: dict[str, dict[str, list[float]]] = {k: {"epoch_s": [], "foreign": []} for k in setups}
    for r in range(args.rounds):
        names = list(setups) if r % 2 == 0 else list(reversed(setups))
        for name in names:
            fn, threads = setups[name]
            run = (args.samples, args.epochs, args.batch_size, threads)
            times, _wall, foreign = measured(fn, *run)
            results[name]["epoch_s"] += times
            results[name]["foreign"].append(foreign)
            print(f"round {r + 1} {name:<26} epochs {', '.join(f'{t:.2f}' for t in times)} s  "
                  f"(others took {foreign:.0%} of the machine)", flush=True)  # fmt: skip
    base = statistics.median(results[f"1 process x {cores} threads"]["epoch_s"])
    print(f"\n{'set-up':<28} {'median s/epoch':>14} {'min':>7} {'max':>7} {'speed-up':>9}")
    summary = {}
    for name, res in results.items():
        med = statistics.median(res["epoch_s"])
        summary[name] = {"median": med, "min": min(res["epoch_s"]), "max": max(res["epoch_s"]),
                         "speedup": base / med, **res}  # fmt: skip
        print(f"{name:<28} {med:>14.3f} {min(res['epoch_s']):>7.3f} {max(res['epoch_s']):>7.3f}"
              f" {base / med:>9.2f}")  # fmt: skip
    if args.json is not None:
        meta = {"date": dt.datetime.now(dt.UTC).isoformat(), "torch": torch.__version__,
                "python": platform.python_version(), "cores": cores,
                "args": vars(args)}  # fmt: skip
        args.json.write_text(json.dumps({"meta": meta, "results": summary}, indent=2, default=str))


if __name__ == "__main__":
    main()
