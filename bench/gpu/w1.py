"""W1 on the GPU: skier ``fit`` against a plain PyTorch loop, in one process, interleaved rounds.

W1 is the suite's (``bench/suite.py``): synthetic 60,000 x 784 (1% each held out for val and
test, as the suite loads it), MLP 784-256-128-10, Adam lr 1e-3, batch 128, seed 0. Variants:

  loop_b        the suite's loop (b) on the device: a seeded CPU permutation moved to the
                device, batches by indexing the device tensors, the epoch's loss read once
  skier         ``skier.train.fit`` as a user calls it (defaults: deterministic algorithms on)
  skier_nondet  the same with ``deterministic=False`` (what determinism costs on the device)

The data is put on the device once; each call trains a fresh copy of the same initial weights for
1 + ``epochs`` epochs and the first (warm-up) epoch is dropped. Rounds are interleaved and the
order of the variants rotates every round. The headline is the median epoch time of ``skier``
÷ that of ``loop_b`` (the issue's target at W1: <= 0.85).

Usage::

    python bench/gpu/w1.py --out DIR              # on a GPU: writes DIR/w1.json
    python bench/gpu/w1.py --out DIR --dry-run    # the same steps on the CPU, tiny (seconds)
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# skier trains deterministically by default; cuBLAS needs a fixed workspace for that (else
# torch warns at every matmul). Set before torch initialises CUDA.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: the suite's W1
from suite import _run_config, _spec

VARIANTS = ("loop_b", "skier", "skier_nondet")
TARGET = 0.85  # skier fit / loop (b) at W1 (issue 22)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _loop_b(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch: int,
            epochs: int) -> tuple[list[float], list[float]]:  # fmt: skip
    device = x.device
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    times, losses = [], []
    for _ in range(epochs):
        _sync(device)
        t0 = time.perf_counter()
        total = torch.zeros((), device=device)
        order = torch.randperm(len(y), generator=generator).to(device)
        for idx in order.split(batch):
            xb, yb = x[idx], y[idx]
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(yb)
        losses.append(float(total) / len(y))  # reads the device: the epoch has finished
        times.append(time.perf_counter() - t0)
    return times, losses


def _skier(model: torch.nn.Module, train: Any, *, batch: int, epochs: int, device: str,
           deterministic: bool) -> tuple[list[float], list[float]]:  # fmt: skip
    from skier.train import fit

    result = fit(model, train, epochs=epochs, batch_size=batch, lr=1e-3, seed=0,
                 progress="off", device=device, deterministic=deterministic)  # fmt: skip
    return result.history.column("epoch_time"), result.history.column("loss")


def run(*, dry_run: bool, rounds: int, epochs: int) -> dict[str, Any]:
    from skier.data import load_data
    from skier.models import build_model

    if not dry_run and not torch.cuda.is_available():
        raise SystemExit("w1.py: no CUDA device (torch.cuda.is_available() is False); "
                         "use --dry-run to run the same steps on the CPU")  # fmt: skip
    device = torch.device("cpu" if dry_run else "cuda")
    spec = _spec("W1", dry_run)  # dry run: the suite's smoke size (2,000 examples)
    config = _run_config("W1", dry_run)
    started = time.perf_counter()
    data = load_data(config.data)
    train = data.train.to(device)
    x, y = train.inputs[0], train.targets
    torch.manual_seed(0)
    initial = build_model(config.model, input_shape=data.input_shape,
                          output_size=data.output_size).to(device)  # fmt: skip
    calls: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
        for variant in order:
            model = copy.deepcopy(initial)
            if variant == "loop_b":
                times, losses = _loop_b(model, x, y, batch=spec["batch"], epochs=epochs + 1)
            else:
                times, losses = _skier(model, train, batch=spec["batch"], epochs=epochs + 1,
                                       device=device.type,
                                       deterministic=variant == "skier")  # fmt: skip
            calls[variant].append({"round": r, "epoch_times": times[1:], "losses": losses})
    summary: dict[str, Any] = {}
    for variant, found in calls.items():
        epoch_times = [t for c in found for t in c["epoch_times"]]
        summary[variant] = {
            "median_epoch_s": statistics.median(epoch_times),
            "min_epoch_s": min(epoch_times),
            "final_loss": found[-1]["losses"][-1],
            "calls": found,
        }
    base = summary["loop_b"]["median_epoch_s"]
    for found in summary.values():
        found["ratio_to_loop_b"] = found["median_epoch_s"] / base
    ratio = summary["skier"]["ratio_to_loop_b"]
    return {
        "workload": "W1",
        "dry_run": dry_run,
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "examples": len(y),
        "batch": spec["batch"],
        "epochs_measured": epochs,
        "rounds": rounds,
        "variants": summary,
        "skier_over_loop_b": ratio,
        "target": TARGET,
        "met": ratio <= TARGET,
        "wall_s": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for w1.json")
    parser.add_argument("--dry-run", action="store_true", help="the CPU, tiny sizes")
    parser.add_argument("--rounds", type=int, default=None, help="default 7 (dry run: 2)")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="measured epochs per call, after a warm-up one (default 3; dry: 1)",
    )
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.dry_run else 7)
    epochs = args.epochs or (1 if args.dry_run else 3)
    record = run(dry_run=args.dry_run, rounds=rounds, epochs=epochs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "w1.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"W1 on {record['device']}: skier fit / loop (b) = {record['skier_over_loop_b']:.3f} "
          f"(target <= {TARGET}); median epochs: "
          + ", ".join(f"{v} {s['median_epoch_s'] * 1e3:.1f} ms"
                      for v, s in record["variants"].items()))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
