"""What the live display in a notebook costs: epoch time with it on against off (issue 18).

The live display needs a Jupyter kernel. Each call here runs in a fresh process that starts a
real IPython ``InteractiveShell`` marked as a kernel's (``IPKernelApp`` in its config, which
is what skier asks), whose display publisher JSON-encodes every bundle it is given (as a kernel
does before sending it) and then drops it. So ``fit(progress="auto")`` chooses
:class:`~skier.train.LiveDisplay` by itself and does all of its work: the clock reads per
batch, the text, the learning-curve figure drawn to PNG and base64 when due, the final draw;
only the socket to a notebook is missing. ``progress="off"`` is the baseline: no callback at
all. (A real kernel through nbclient would add the ZeroMQ send of each update, a few updates
a second at most.)

Workloads (as in ``bench/suite.py``):
  W1  MLP 784-256-128-10, Adam, batch 128, synthetic 60,000 x 784 (1% validation), 1 warm-up
      + 3 measured epochs
  W3  MLP 64-128-10 on digits, batch 64, 1 warm-up + 30 measured epochs (epochs of ~20 ms:
      what the throttle is for)

An epoch's time runs from one epoch's end to the next, so it includes the previous epoch's
display work (its on_epoch_end runs after the clock's); the whole ``fit`` call is timed too,
which adds the final draw. Calls alternate off/live, the order flipping every round, each in
its own process with 1 torch thread; the machine's other load during each call is recorded
(``foreign``, the share of the CPUs other processes took). The ratio is the median epoch time
live / off, judged against 1.03 at W1.

Usage::

    python bench/bench_live.py                       # ~3 minutes on 2 cores
    python bench/bench_live.py --rounds 1 --json /tmp/live.json
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
import time
from pathlib import Path
from typing import Any

TARGET_W1 = 1.03
SPECS: dict[str, dict[str, Any]] = {
    "W1": {"data": {"name": "synthetic", "samples": 60_000, "features": 784, "classes": 10,
                    "val_fraction": 0.01, "test_fraction": 0.01},
           "hidden": [256, 128], "batch": 128, "epochs": 3},
    "W3": {"data": {"name": "digits"}, "hidden": [128], "batch": 64, "epochs": 30},
}  # fmt: skip


def _kernel_shell() -> Any:
    """An InteractiveShell that skier takes for a kernel's; its displays are encoded, dropped."""
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class Dropping(DisplayPublisher):  # type: ignore[misc]
        sent = 0
        figures = 0  # distinct images sent: the figures drawn
        _png = None

        def publish(self, data: Any, metadata: Any = None, *args: Any, **kwargs: Any) -> None:
            json.dumps({"data": data, "metadata": metadata or {}})
            Dropping.sent += 1
            if data.get("image/png") not in (None, Dropping._png):
                Dropping.figures, Dropping._png = Dropping.figures + 1, data["image/png"]

    shell = InteractiveShell.instance()
    shell.display_pub = Dropping(shell=shell)
    shell.config["IPKernelApp"] = Config()
    return shell


def _child(workload: str, variant: str) -> dict[str, Any]:
    import torch

    from skier._live import display_mode
    from skier.config import DataConfig, ModelConfig
    from skier.data import load_data
    from skier.models import build_model
    from skier.train import Callback, fit

    torch.set_num_threads(1)
    shell = _kernel_shell()
    assert display_mode("auto") == "live"  # the shell passes for a kernel's
    spec = SPECS[workload]
    data = load_data(DataConfig.model_validate(spec["data"]))
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="mlp", hidden_sizes=spec["hidden"]),
                        input_shape=data.input_shape, output_size=data.output_size)  # fmt: skip
    marks: list[float] = []

    class Clock(Callback):
        stateful = False

        def on_epoch_end(self, state: Any, logs: Any) -> None:
            marks.append(time.perf_counter())

    clock = Clock()
    busy0, own0 = _busy(), _own()
    started = time.perf_counter()
    result = fit(model, data, optimizer="adam", lr=1e-3, epochs=spec["epochs"] + 1,
                 batch_size=spec["batch"], seed=0, callbacks=[clock],
                 progress="auto" if variant == "live" else "off")  # fmt: skip
    wall = time.perf_counter() - started
    foreign = max((_busy() - busy0) - (_own() - own0), 0.0) / (wall * (os.cpu_count() or 1))
    return {
        "workload": workload,
        "variant": variant,
        "epoch_s": [b - a for a, b in itertools.pairwise(marks)],  # the warm-up epoch dropped
        "fit_s": wall,
        "foreign": foreign,
        "updates": type(shell.display_pub).sent,
        "figures": type(shell.display_pub).figures,
        "last_loss": result.history.rows[-1]["loss"],
    }


def _busy() -> float:
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own() -> float:
    t = os.times()
    return t.user + t.system


def _run(workload: str, variant: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", workload, variant],
                         capture_output=True, text=True, timeout=1800, check=False)  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"{workload} {variant} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _summary(calls: list[dict[str, Any]]) -> dict[str, Any]:
    by = {v: [c for c in calls if c["variant"] == v] for v in ("off", "live")}
    epoch = {v: statistics.median(itertools.chain(*(c["epoch_s"] for c in cs)))
             for v, cs in by.items()}  # fmt: skip
    fit_s = {v: statistics.median(c["fit_s"] for c in cs) for v, cs in by.items()}
    return {
        "median_epoch_s": epoch,
        "median_fit_s": fit_s,
        "epoch_ratio": epoch["live"] / epoch["off"],
        "fit_ratio": fit_s["live"] / fit_s["off"],
        "updates_per_fit": [c["updates"] for c in by["live"]],
        "figures_per_fit": [c["figures"] for c in by["live"]],
        "max_foreign": max(c["foreign"] for c in calls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "VARIANT"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workloads", nargs="+", default=list(SPECS), choices=list(SPECS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(*args.child)))
        return
    calls: dict[str, list[dict[str, Any]]] = {w: [] for w in args.workloads}
    for r in range(args.rounds):
        for workload in args.workloads:
            for variant in ("off", "live") if r % 2 == 0 else ("live", "off"):
                calls[workload].append(found := _run(workload, variant))
                print(f"round {r + 1} {workload} {variant}: median epoch "
                      f"{statistics.median(found['epoch_s']) * 1e3:.1f} ms, fit "
                      f"{found['fit_s']:.2f} s, foreign {found['foreign']:.0%}",
                      flush=True)  # fmt: skip
    summary = {w: _summary(cs) for w, cs in calls.items()}
    verdict = None
    if "W1" in summary:
        ratio = summary["W1"]["epoch_ratio"]
        verdict = {"target": f"W1 epoch live / off <= {TARGET_W1}", "value": ratio,
                   "met": ratio <= TARGET_W1}  # fmt: skip
    for w, s in summary.items():
        ms = {v: s["median_epoch_s"][v] * 1e3 for v in ("live", "off")}
        print(
            f"{w}: epoch live/off {s['epoch_ratio']:.4f} ({ms['live']:.1f} / {ms['off']:.1f} ms), "
            f"fit live/off {s['fit_ratio']:.4f}, updates {s['updates_per_fit']}, "
            f"figures {s['figures_per_fit']}, max foreign load {s['max_foreign']:.0%}"
        )
    if verdict:
        print(
            f"target {verdict['target']}: {verdict['value']:.4f} "
            f"{'met' if verdict['met'] else 'NOT MET'}"
        )
    record = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
        "rounds": args.rounds,
        "summary": summary,
        "verdict": verdict,
        "calls": calls,
    }
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
