"""What gradient accumulation and SAM cost against the plain optimizer step, in one run.

Workloads are the suite's (``suite.py``): W1 (MLP 784-256-128-10, Adam, batch 128, synthetic
60,000 x 784) and W3 (MLP 64-128-10 on digits, batch 64). Variants, each with the same data,
model, optimizer and seed:

  plain        the workload as it is: one forward-backward pass per step of B examples
  accumulate4  ``train.accumulate: 4`` with ``batch_size: B/4``: the *same* steps of B examples
               (the same gradient, the same number of optimizer steps), each cut into 4
               micro-batches; its cost is that of 4 smaller passes instead of one, plus the
               loop's per-micro-batch work (what accumulation buys is memory, not speed)
  sam          ``optim.sam: 0.05`` at batch B: two forward-backward passes a step (expected
               about 2x)

Each (workload, variant) call runs in a fresh process and trains ``1 + epochs`` epochs; the first
(warm-up) epoch is dropped and the median of the others' ``epoch_time`` is the call's time. The
variants are interleaved over rounds (the order alternates) so machine noise hits all of them,
and the ratio to ``plain`` is taken within each round, then the median over rounds is reported.

Usage::

    python bench/bench_step_techniques.py --json out.json            # 3 rounds, W1 and W3
    python bench/bench_step_techniques.py --rounds 1 --w1-samples 6000 --json out.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # the suite's workloads
VARIANTS = ("plain", "accumulate4", "sam")
EPOCHS = {"W1": 2, "W3": 10}  # measured epochs per call (after one warm-up epoch)


def _child(workload: str, variant: str, samples: int | None, threads: int | None) -> dict[str, Any]:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)

    from skier.data import load_data
    from skier.models import build_model
    from skier.train import fit
    from suite import _run_config

    config = _run_config(workload, smoke=False)
    train = {"epochs": EPOCHS[workload] + 1, "progress": "off", "device": "cpu"}
    batch = config.train.batch_size
    if variant == "accumulate4":
        train |= {"batch_size": batch // 4, "accumulate": 4}
    updates: dict[str, Any] = {"train": config.train.model_copy(update=train)}
    if variant == "sam":
        updates["optim"] = config.optim.model_copy(update={"sam": 0.05})
    if samples is not None and config.data.name == "synthetic":
        updates["data"] = config.data.model_copy(update={"samples": samples})
    config = config.model_copy(update=updates)
    data = load_data(config.data)
    torch.manual_seed(0)
    model = build_model(config.model, input_shape=data.input_shape, output_size=data.output_size)
    started = time.perf_counter()
    result = fit(model, data.train, train_config=config.train, optim_config=config.optim)
    wall = time.perf_counter() - started
    times = result.history.column("epoch_time")[1:]
    return {
        "workload": workload, "variant": variant, "epoch_s": times,
        "median_epoch_s": statistics.median(times), "wall_s": wall,
        "final_loss": result.history.column("loss")[-1], "train_examples": len(data.train),
        "steps_per_epoch": len(result.history.steps["lr"]) // (EPOCHS[workload] + 1),
        "threads": torch.get_num_threads(),
    }  # fmt: skip


def _call(args: argparse.Namespace, workload: str, variant: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", workload, variant]
    for flag, value in (("--w1-samples", args.w1_samples), ("--threads", args.threads),
                        ("--w3-epochs", args.w3_epochs)):  # fmt: skip
        if value is not None:
            cmd += [flag, str(value)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{workload}/{variant} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _load() -> list[float]:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workloads", nargs="+", default=["W1", "W3"], choices=list(EPOCHS))
    parser.add_argument("--w1-samples", type=int, default=None, help="W1's examples (60,000)")
    parser.add_argument("--w3-epochs", type=int, default=None, help="W3's measured epochs (10)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per call")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "VARIANT"))
    args = parser.parse_args()
    if args.w3_epochs is not None:
        EPOCHS["W3"] = args.w3_epochs
    if args.child:
        print(json.dumps(_child(args.child[0], args.child[1], args.w1_samples, args.threads)))
        return
    calls: dict[str, dict[str, list[dict[str, Any]]]] = {
        w: {v: [] for v in VARIANTS} for w in args.workloads
    }
    load_before = _load()
    for r in range(args.rounds):
        for workload in args.workloads:
            order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                found = _call(args, workload, variant)
                calls[workload][variant].append(found)
                print(f"round {r + 1} {workload} {variant:12s} "
                      f"{found['median_epoch_s']:.3f} s/epoch", flush=True)  # fmt: skip
    summary: dict[str, Any] = {}
    for workload, by_variant in calls.items():
        plain = [c["median_epoch_s"] for c in by_variant["plain"]]
        summary[workload] = {}
        for variant, found in by_variant.items():
            times = [c["median_epoch_s"] for c in found]
            ratios = [t / p for t, p in zip(times, plain, strict=True)]
            summary[workload][variant] = {
                "median_epoch_s": statistics.median(times),
                "ratio_to_plain": statistics.median(ratios),
                "ratios_by_round": ratios,
                "steps_per_epoch": found[0]["steps_per_epoch"],
                "final_loss": found[-1]["final_loss"],
            }
            print(f"{workload} {variant:12s} {statistics.median(times):.3f} s/epoch  "
                  f"x{statistics.median(ratios):.2f} of plain")  # fmt: skip
    record = {
        "benchmark": "bench_step_techniques",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_before": load_before,
            "load_after": _load(),
        },
        "rounds": args.rounds,
        "w1_samples": args.w1_samples or 60_000,
        "epochs_measured": {w: EPOCHS[w] for w in args.workloads},
        "threads": args.threads,
        "summary": summary,
        "calls": calls,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
