"""Weight averaging's cost (issue 21): ``fit`` with ``train.ema`` and with ``train.swa_start``
against the plain ``fit``, in one run, each (workload, variant) in a fresh process, interleaved
over rounds (A B C, C B A, ...), the ratio taken within each round and its median reported.

Workloads (bench/suite.py's): W1, the MLP 784-256-128-10 with Adam at batch 128 on synthetic
60,000 x 784 (2 measured epochs); W3, the MLP 64-128-10 on digits at batch 64 (here 10 measured
epochs). One warm-up epoch is discarded. An epoch's time is the loop's ``epoch_time`` (no
validation data: the training pass, and the averaging it does).

Variants:
  plain  fit as a Python user calls it
  ema    + ``ema=0.999``: one ``_foreach_lerp_`` over the weights after every optimizer step
  swa    + ``swa_start=2``: an equal average of the weights once per epoch from epoch 2

Target: EMA at W1 costs at most 3% (ratio <= 1.03).

Usage::

    PYTHONPATH=src python bench/bench_averaging.py --json bench/results/DATE-averaging.json
    python bench/bench_averaging.py --smoke   # tiny sizes: the harness only
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import _run_config, _spec

WORKLOADS = ("W1", "W3")
VARIANTS = ("plain", "ema", "swa")
SETTINGS: dict[str, dict[str, Any]] = {"plain": {}, "ema": {"ema": 0.999}, "swa": {"swa_start": 2}}
TARGETS = {("W1", "ema"): 1.03}


def _child(
    workload: str, variant: str, smoke: bool, device: str, w1_samples: int, threads: int
) -> dict[str, Any]:
    import torch

    if threads:
        torch.set_num_threads(threads)

    import skier
    from skier.data import load_data
    from skier.models import build_model
    from skier.train import fit

    spec = _spec(workload, smoke)
    measured = spec["epochs"] if workload == "W1" or smoke else 10
    config = _run_config(workload, smoke)
    if workload == "W1" and w1_samples and not smoke:  # W1's model and batch, fewer examples
        config.data.samples = w1_samples
    data = load_data(config.data)
    torch.manual_seed(0)
    model = build_model(config.model, input_shape=data.input_shape, output_size=data.output_size)
    result = fit(model, data.train, epochs=measured + 1, batch_size=spec["batch"], lr=1e-3,
                 seed=0, progress="off", device=device, **SETTINGS[variant])  # fmt: skip
    times = result.history.column("epoch_time")[1:]
    return {
        "workload": workload,
        "variant": variant,
        "epoch_times": times,
        "median_epoch_s": statistics.median(times),
        "steps_per_epoch": result.history.rows
        and len(result.history.steps["lr"]) // (measured + 1),
        "device": str(next(model.parameters()).device),
        "threads": torch.get_num_threads(),
        "skier_src": str(Path(skier.__file__).resolve().parent.parent),
    }


def _micro(workload: str, threads: int, repeats: int = 20) -> dict[str, Any]:
    """In one process: a training step of the workload's model (Adam, its batch) against the
    EMA update after it, alternated ``repeats`` times in blocks of 20; medians per call. Less
    exposed to a loaded machine than whole epochs in separate processes."""
    import time

    import torch
    from torch import nn

    from skier.config import TrainConfig
    from skier.train.averaging import WeightAverage

    if threads:
        torch.set_num_threads(threads)
    sizes, batch = ([784, 256, 128, 10], 128) if workload == "W1" else ([64, 128, 10], 64)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    average = WeightAverage(model, TrainConfig(ema=0.999))
    average.after_step()  # the copy; every later update is the lerp
    x, y = torch.randn(batch, sizes[0]), torch.randint(0, 10, (batch,))
    steps, updates = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(20):
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        steps.append((time.perf_counter() - t0) / 20)
        t0 = time.perf_counter()
        for _ in range(20):
            average.after_step()
        updates.append((time.perf_counter() - t0) / 20)
    step, update = statistics.median(steps), statistics.median(updates)
    return {"step_us": step * 1e6, "ema_update_us": update * 1e6, "ratio": (step + update) / step}


def _run_child(workload: str, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", workload, variant, "--device", args.device,
               "--w1-samples", str(args.w1_samples), "--threads", str(args.threads),
               *(["--smoke"] if args.smoke else [])]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=3600, env=os.environ)
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines() or ["(no output)"]
        return {"workload": workload, "variant": variant, "error": lines[-1]}
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "VARIANT"), help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: the harness only")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--w1-samples",
        type=int,
        default=0,
        help="W1 with this many examples (0: the suite's 60,000)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument(
        "--micro-only",
        action="store_true",
        help="only the in-process step-against-EMA-update measurement",
    )
    parser.add_argument("--note", default="", help="a word on the machine (e.g. its load)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.child:
        found = _child(args.child[0], args.child[1], args.smoke, args.device, args.w1_samples,
                       args.threads)  # fmt: skip
        print(json.dumps(found))
        return
    rounds = 0 if args.micro_only else 1 if args.smoke else args.rounds
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        w: {v: [] for v in VARIANTS} for w in args.workloads
    }
    for r in range(rounds):
        for workload in args.workloads:
            for variant in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
                found = _run_child(workload, variant, args)
                runs[workload][variant].append(found)
                shown = found.get("error") or f"median epoch {found['median_epoch_s']:.4f} s"
                print(f"round {r + 1} {workload} {variant:6s} {shown}", flush=True)
    summary: dict[str, Any] = {}
    verdicts = []
    for workload, by_variant in runs.items():
        summary[workload] = {}
        for variant in ("ema", "swa"):
            ratios = [
                v["median_epoch_s"] / p["median_epoch_s"]
                for p, v in zip(by_variant["plain"], by_variant[variant], strict=True)
                if "error" not in p and "error" not in v
            ]
            ratio = statistics.median(ratios) if ratios else None
            summary[workload][f"{variant}_ratio"] = ratio
            summary[workload][f"{variant}_ratios_per_round"] = ratios
            limit = TARGETS.get((workload, variant))
            if limit is not None:
                met = ratio is not None and ratio <= limit
                verdicts.append({"target": f"{variant} at {workload} <= {limit}", "value": ratio,
                                 "met": met})  # fmt: skip
            print(f"{workload} {variant}/plain: {ratio if ratio is None else round(ratio, 4)} "
                  f"(per round: {', '.join(f'{x:.3f}' for x in ratios)})")  # fmt: skip
    micro = {w: _micro(w, args.threads, 2 if args.smoke else 20) for w in args.workloads}
    for workload, found in micro.items():
        print(f"{workload} in-process: step {found['step_us']:.0f} us, EMA update "
              f"{found['ema_update_us']:.0f} us, ratio {found['ratio']:.4f}")  # fmt: skip
    for v in verdicts:
        print(f"target {v['target']}: {'met' if v['met'] else 'NOT MET'} ({v['value']})")
    record = {
        "date": dt.date.today().isoformat(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "device": args.device,
        "smoke": args.smoke,
        "rounds": rounds,
        "w1_samples": args.w1_samples or 60_000,
        "threads": args.threads or None,
        "note": args.note,
        "summary": summary,
        "in_process": micro,
        "targets": verdicts,
        "runs": runs,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
