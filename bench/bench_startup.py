"""Start-up (issue 22): imports, ``skier train --help`` and process start to the first epoch.

Every figure is one fresh process, timed from the parent: the variants are interleaved over
``--rounds`` (A B ... B A), and each reports its median and fastest. With ``--baseline SRC``
every skier figure is taken again with that ``src`` first on ``PYTHONPATH`` (the checkout
before a change), interleaved with the rest.

  import_torch         ``python -c "import torch"``: the floor every PyTorch tool pays
  import_skier         ``python -c "import skier"`` (lazy: no torch)
  import_skier_train   ``python -c "import skier.train"``
  train_help           ``python -m skier train --help``
  load_digits          ``skier.load_data`` of digits (split 60/20/20) after ``import skier.runner``:
                       what a digits run adds to its imports before training
  first_epoch_cli      ``python -m skier train`` on digits (the default config), from the
                       process start to its first epoch's start (the line it prints after the
                       epoch less the epoch's time on it)
  first_epoch_fit      a script calling ``skier.load_data`` and ``skier.fit`` (digits MLP), the
                       same way
  first_epoch_plain    a hand-written script: torch, scikit-learn's digits, standardised, an
                       MLP, Adam, then the same mark: the floor for a digits run

Usage::

    python bench/bench_startup.py --rounds 5 --baseline ../base/src --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
EPOCH_LINE = re.compile(r"epoch 1/\d+ .* ([0-9.]+) s$")  # skier train's line after epoch 1

FIT = """
import sys, skier
data = skier.load_data(skier.DataConfig(name="digits"))
model = skier.build_model(skier.ModelConfig(), input_shape=data.input_shape,
                          output_size=data.output_size)

class Mark(skier.Callback):  # the line skier train prints after an epoch, with its duration
    def on_epoch_end(self, state, logs):
        print(f"epoch 1/1 loss {logs['loss']:.3f} {logs['epoch_time']:.4f} s", flush=True)

skier.fit(model, data.train, epochs=1, progress="off", device="cpu", callbacks=[Mark()])
"""

LOAD_DIGITS = """
import skier.runner
from skier.config import DataConfig
from skier.data import load_data
load_data(DataConfig(name="digits"))
"""

PLAIN = """
import sys, torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
x, y = load_digits(return_X_y=True)
x_train, _, y_train, _ = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
mean, std = x_train.mean(0), x_train.std(0) + 1e-8
x_t = torch.tensor((x_train - mean) / std, dtype=torch.float32)
y_t = torch.tensor(y_train)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
print("epoch 1 starts", flush=True)
for i in torch.randperm(len(y_t)).split(128):
    opt.zero_grad(); torch.nn.functional.cross_entropy(model(x_t[i]), y_t[i]).backward(); opt.step()
"""


def _command(variant: str, out: str) -> list[str]:
    python = sys.executable
    return {
        "import_torch": [python, "-c", "import torch"],
        "import_skier": [python, "-c", "import skier"],
        "import_skier_train": [python, "-c", "import skier.train"],
        "train_help": [python, "-m", "skier", "train", "--help"],
        "load_digits": [python, "-c", LOAD_DIGITS],
        "first_epoch_cli": [python, "-m", "skier", "train", "--out", out, "--set",
                            "train.epochs=1", "--set",
                            "record.plots=false", "--set", "record.report=false"],
        "first_epoch_fit": [python, "-c", FIT],
        "first_epoch_plain": [python, "-c", PLAIN],
    }[variant]  # fmt: skip


def _time(variant: str, src: Path) -> float:
    """Wall seconds: see :func:`_measure`."""
    return _measure(variant, src)[0]


def _measure(variant: str, src: Path) -> tuple[float, float | None]:
    """Seconds from starting the process to its end, and the CPU seconds it used (user +
    system, which a loaded machine distorts far less than the wall time); or to its first
    epoch's start (its CPU figure then is the whole process's, to its end after one epoch): the
    moment a line ``epoch 1/N ... S s`` appears (written at the end of epoch 1, with the epoch's
    own duration S, as ``skier train`` prints it) less S, or a line ``epoch 1 starts``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    with tempfile.TemporaryDirectory(prefix="skier-startup-") as out:
        command = _command(variant, out)
        t0 = time.perf_counter()
        if not variant.startswith("first_epoch"):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            return wall, cpu
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
        assert proc.stdout is not None
        found, seen = None, []
        for line in proc.stdout:
            seen.append(line)
            if found is None and line.startswith("epoch 1 starts"):
                found = time.perf_counter() - t0
            elif found is None and (m := EPOCH_LINE.match(line)):
                found = time.perf_counter() - t0 - float(m.group(1))
        if proc.wait(timeout=300) != 0 or found is None:
            raise SystemExit(f"{variant} failed: {''.join(seen)[-800:]}")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return found, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", type=Path, default=None, metavar="SRC")
    parser.add_argument("--only", nargs="+", default=None, help="only these variants")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    variants = ["import_torch", "import_skier", "import_skier_train", "train_help", "load_digits",
                "first_epoch_plain", "first_epoch_fit", "first_epoch_cli"]  # fmt: skip
    runs = [(v, "skier", SRC) for v in variants]
    if args.baseline is not None:
        skier_runs = ("train_help", "load_digits", "first_epoch_fit", "first_epoch_cli")
        runs += [(v, "base", args.baseline.resolve()) for v in variants
                 if "skier" in v or v in skier_runs]  # fmt: skip
    if args.only:
        runs = [r for r in runs if r[0] in args.only]
    times: dict[str, list[float]] = {f"{v}/{who}": [] for v, who, _ in runs}
    cpu: dict[str, list[float]] = {f"{v}/{who}": [] for v, who, _ in runs}
    for r in range(args.rounds):
        for variant, who, src in runs if r % 2 == 0 else runs[::-1]:
            wall, used = _measure(variant, src)
            times[f"{variant}/{who}"].append(wall)
            if used is not None:
                cpu[f"{variant}/{who}"].append(used)
        print(f"round {r + 1} done", flush=True)
    summary: dict[str, dict[str, Any]] = {}
    for k, v in times.items():
        summary[k] = {"median_s": statistics.median(v), "min_s": min(v), "all_s": v}
        if cpu[k]:
            summary[k].update(cpu_median_s=statistics.median(cpu[k]), cpu_min_s=min(cpu[k]),
                              cpu_all_s=cpu[k])  # fmt: skip
    for k, s in summary.items():
        shown = (f"  CPU median {s['cpu_median_s']:.3f} s  fastest {s['cpu_min_s']:.3f} s"
                 if "cpu_median_s" in s else "")  # fmt: skip
        print(f"{k:28s} median {s['median_s']:.3f} s  fastest {s['min_s']:.3f} s{shown}")
    if args.json:
        record = {"date": time.strftime("%Y-%m-%d"), "rounds": args.rounds,
                  "baseline": str(args.baseline), "summary": summary}  # fmt: skip
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
