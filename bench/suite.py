"""The benchmark suite (issue 10, first part): skier against plain PyTorch loops, each workload and
variant in its own fresh process, interleaved over rounds, with peak memory and the machine's
matmul limit.

Workloads:
  W1  MLP 784-256-128-10, Adam, batch 128, synthetic 60,000 x 784, 2 measured epochs
  W2  the same at batch 32 (overhead-dominated)
  W3  MLP 64-128-10 on digits, batch 64, 30 epochs
  W4  the small CNN of `skier demo` on digits (1x8x8), batch 64, 10 epochs

Variants (same data, model, optimizer, seed; one warm-up epoch discarded):
  loop_a   a minimal hand-written loop over a DataLoader(TensorDataset)
  loop_b   a minimal loop batching by indexing shuffled in-memory tensors
  skier    skier.train.fit as a user calls it (progress off: no terminal here)

Also: `import skier` and `skier --help` times, and for W1 the sustained float32 matmul GFLOP/s at
the workload's shapes (the machine's limit) against what each variant achieves.

Usage::

    python bench/suite.py                      # the suite (several minutes on 2 cores)
    python bench/suite.py --smoke --json x.json  # tiny sizes: the harness only (the tests run it)
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WORKLOADS = ("W1", "W2", "W3", "W4")
VARIANTS = ("loop_a", "loop_b", "skier")


def _spec(workload: str, smoke: bool) -> dict[str, Any]:
    if workload in ("W1", "W2"):
        return {
            "data": "synthetic", "samples": 2_000 if smoke else 60_000, "hidden": [256, 128],
            "batch": 128 if workload == "W1" else 32, "epochs": 1 if smoke else 2,
        }  # fmt: skip
    if workload == "W3":
        return {"data": "digits", "hidden": [128], "batch": 64, "epochs": 2 if smoke else 30}
    return {"data": "digits-images", "batch": 64, "epochs": 1 if smoke else 10}


# --- child: one workload, one variant, in a fresh process ----------------------------------------


def _child(workload: str, variant: str, smoke: bool) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    from skier.config import DataConfig, ModelConfig
    from skier.data import load_data
    from skier.models import build_model

    spec = _spec(workload, smoke)
    if spec["data"] == "synthetic":
        config = DataConfig(name="synthetic", samples=spec["samples"], features=784, classes=10,
                            val_fraction=0.01, test_fraction=0.01)  # fmt: skip
        model_config = ModelConfig(hidden_sizes=spec["hidden"])
    elif spec["data"] == "digits":
        config = DataConfig()
        model_config = ModelConfig(hidden_sizes=spec["hidden"])
    else:
        config = DataConfig(as_images=True)
        model_config = ModelConfig(name="cnn", channels=[32, 64], hidden_sizes=[128])
    data = load_data(config)
    torch.manual_seed(0)
    model = build_model(model_config, input_shape=data.input_shape, output_size=data.output_size)
    x, y = data.train.inputs[0], data.train.targets
    epochs, batch = spec["epochs"] + 1, spec["batch"]  # + 1 warm-up epoch
    times: list[float] = []
    losses: list[float] = []
    if variant == "skier":
        from skier.train import fit

        result = fit(model, data.train, epochs=epochs, batch_size=batch, lr=1e-3, seed=0,
                     progress="off")  # fmt: skip
        times = result.history.column("epoch_time")
        losses = result.history.column("loss")
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True,
                            generator=generator)  # fmt: skip
        for _ in range(epochs):
            t0 = time.perf_counter()
            total = torch.zeros(())
            if variant == "loop_a":
                batches = iter(loader)
            else:
                order = torch.randperm(len(y), generator=generator)
                batches = ((x[i], y[i]) for i in order.split(batch))
            for xb, yb in batches:
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(yb)
            losses.append(float(total) / len(y))
            times.append(time.perf_counter() - t0)
    flops = None
    if spec["data"] == "synthetic":
        sizes = [784, *spec["hidden"], 10]
        forward = 2 * sum(a * b for a, b in itertools.pairwise(sizes))
        flops = 3 * forward * len(y)  # per epoch: forward + backward ≈ 3x forward
    return {
        "workload": workload,
        "variant": variant,
        "epoch_times": times[1:],
        "losses": losses,
        "examples": len(y),
        "flops_per_epoch": flops,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }


def _matmul_gflops(smoke: bool) -> float:
    """Sustained float32 GFLOP/s of the W1 layer shapes (batch 128), forward and backward."""
    import torch

    shapes = [(128, 784, 256), (128, 256, 128), (128, 128, 10)]
    mats = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in shapes]
    flop = sum(2 * m * k * n for m, k, n in shapes)
    repeats = 20 if smoke else 400
    for a, b in mats:
        a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        for a, b in mats:
            a @ b
    return flop * repeats / (time.perf_counter() - t0) / 1e9


# --- parent --------------------------------------------------------------------------------------


def _run_child(workload: str, variant: str, smoke: bool) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", workload, variant, *(["--smoke"] if smoke else [])],
        capture_output=True, text=True, timeout=3600, check=True,
    )  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _seconds(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True, timeout=120)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "VARIANT"))
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], args.child[1], args.smoke)))
        return
    rounds = 1 if args.smoke else args.rounds
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        w: {v: [] for v in VARIANTS} for w in args.workloads
    }
    for r in range(rounds):
        for workload in args.workloads:
            order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                found = _run_child(workload, variant, args.smoke)
                runs[workload][variant].append(found)
                print(f"round {r + 1} {workload} {variant:7s} median epoch "
                      f"{statistics.median(found['epoch_times']):.3f} s", flush=True)  # fmt: skip
    python = str(Path(sys.executable))
    skier_bin = str(Path(sys.executable).with_name("skier"))
    repeats = 1 if args.smoke else 5
    record: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "python": platform.python_version(),
        "smoke": args.smoke,
        "import_skier_s": _seconds([python, "-c", "import skier"], repeats),
        "skier_help_s": _seconds([skier_bin, "--help"], repeats),
        "matmul_gflops": _matmul_gflops(args.smoke),
        "workloads": {},
    }
    print(
        f"\nimport skier {record['import_skier_s']:.3f} s, skier --help "
        f"{record['skier_help_s']:.3f} s, matmul limit {record['matmul_gflops']:.1f} GFLOP/s"
    )
    for workload, variants in runs.items():
        summary = {}
        for variant, found in variants.items():
            epoch = statistics.median(t for f in found for t in f["epoch_times"])
            flops = found[0]["flops_per_epoch"]
            summary[variant] = {
                "median_epoch_s": epoch,
                "min_epoch_s": min(t for f in found for t in f["epoch_times"]),
                "max_epoch_s": max(t for f in found for t in f["epoch_times"]),
                "peak_rss_mb": max(f["peak_rss_mb"] for f in found),
                "achieved_gflops": flops / epoch / 1e9 if flops else None,
                "final_loss": found[0]["losses"][-1],
            }
        base = summary["loop_b"]["median_epoch_s"]
        for variant, s in summary.items():
            s["ratio_to_loop_b"] = s["median_epoch_s"] / base
            print(
                f"{workload} {variant:7s} {s['median_epoch_s']:.4f} s/epoch  "
                f"x{s['ratio_to_loop_b']:.3f} of loop_b  RSS {s['peak_rss_mb']:.0f} MB"
            )
        record["workloads"][workload] = summary
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
