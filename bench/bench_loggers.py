"""What the TensorBoard and MLflow loggers cost (issue 19).

1. Epoch time with each logger on against off, in one run: ``fit`` with no logger, with
   ``TensorBoardLogger`` and with ``MLflowLogger`` (a local SQLite store), each (workload,
   variant) in a fresh process, interleaved over rounds (A B C, C B A, ...), the ratio of median
   epoch times taken within each round and its median reported. The loggers' start (MLflow's
   store and run, the params) and end (hparams, artifacts) happen outside the epochs: they are
   reported apart as the fit's wall time minus the sum of its epochs.
   Workloads (bench/suite.py's): W1, the MLP 784-256-128-10 with Adam at batch 128 on synthetic
   data (``--w1-samples`` examples, default the suite's 60,000); W3, the MLP 64-128-10 on digits
   at batch 64. One warm-up epoch is discarded.
2. In one process, the seconds each logger adds to an epoch of 10 metrics (its hook, its sends
   amortized), with its default ``flush_every_s`` and with a send every epoch.
3. 1,000 epochs x 10 metrics to a local MLflow store through ``MLflowLogger`` (one batched send
   at the end, as a run whose epochs are faster than ``flush_every_s``), and the same points
   sent one ``log_metric`` call each on a sample, extrapolated (the pattern the issue quotes).

Targets: ratio <= 1.02 at W1, <= 1.10 on digits epochs; 1,000 x 10 points in well under 5 s.

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=src python bench/bench_loggers.py --rounds 2 --w1-samples 6000
    python bench/bench_loggers.py --smoke   # tiny sizes: the harness only
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
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import _run_config, _spec

WORKLOADS = ("W1", "W3")
VARIANTS = ("off", "tensorboard", "mlflow")
TARGETS = {"W1": 1.02, "W3": 1.10}


def _child(
    workload: str, variant: str, smoke: bool, w1_samples: int, epochs: int
) -> dict[str, Any]:
    import torch

    from skier.data import load_data
    from skier.models import build_model
    from skier.train import MLflowLogger, TensorBoardLogger, fit

    warnings.simplefilter("ignore", DeprecationWarning)
    spec = _spec(workload, smoke)
    config = _run_config(workload, smoke)
    if workload == "W1" and w1_samples and not smoke:
        config.data.samples = w1_samples
    data = load_data(config.data)
    torch.manual_seed(0)
    model = build_model(config.model, input_shape=data.input_shape, output_size=data.output_size)
    folder = Path(tempfile.mkdtemp())
    callbacks: list[Any] = []
    if variant == "tensorboard":
        callbacks = [TensorBoardLogger(folder / "tb", params={"lr": 1e-3})]
    elif variant == "mlflow":
        callbacks = [MLflowLogger(f"sqlite:///{folder / 'mlflow.db'}", params={"lr": 1e-3})]
    measured = epochs if not smoke else 2
    t0 = time.perf_counter()
    result = fit(model, data.train, data.val, epochs=measured + 1, batch_size=spec["batch"],
                 lr=1e-3, seed=0, progress="off", callbacks=callbacks)  # fmt: skip
    wall = time.perf_counter() - t0
    times = result.history.column("epoch_time")
    failures = [cb.failure for cb in callbacks if cb.failure]
    return {
        "workload": workload,
        "variant": variant,
        "median_epoch_s": statistics.median(times[1:]),
        "epoch_times": times[1:],
        "outside_epochs_s": wall - sum(times),
        "failures": failures,
    }


def _bulk(epochs: int, keys: int, sample: int) -> dict[str, Any]:
    """``epochs`` x ``keys`` points through MLflowLogger (batched), and ``sample`` single
    ``log_metric`` calls, extrapolated to the same number of points."""
    from mlflow.tracking import MlflowClient

    from skier.history import History
    from skier.train import MLflowLogger, TrainState

    warnings.simplefilter("ignore", DeprecationWarning)
    folder = Path(tempfile.mkdtemp())
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    names = ["loss", "val_loss", *(f"metric_{i}" for i in range(keys - 2))]
    rows = [{"epoch": float(e), **{k: 1.0 / e for k in names}} for e in range(1, epochs + 1)]
    import torch

    history = History()  # a fresh run: nothing sent yet
    state = TrainState(torch.nn.Linear(1, 1), epochs=epochs, task="regression", history=history,
                       available_keys=frozenset(names))  # fmt: skip
    logger = MLflowLogger(uri, flush_every_s=1e9)
    logger.on_fit_start(state)  # opens the store and the run (on its sender thread)
    assert logger.wait_opened(60), logger.failure
    history.extend(rows)
    state.epoch = epochs
    t0 = time.perf_counter()
    logger._pending = [dict(r) for r in rows]  # the rows a live run would have buffered
    logger._hand_off()
    assert logger.drain(600)  # the sender has sent them, in batches
    batched = time.perf_counter() - t0
    assert logger.failure is None, logger.failure
    client = MlflowClient(tracking_uri=uri)
    got = len(client.get_metric_history(logger.run_id, "metric_3"))
    run = client.create_run(client.get_experiment_by_name("skier").experiment_id)
    t0 = time.perf_counter()
    for i in range(sample):
        client.log_metric(run.info.run_id, names[i % keys], 0.5, step=i // keys)
    single = (time.perf_counter() - t0) / sample
    return {
        "points": epochs * keys,
        "batched_s": batched,
        "history_points_read_back": got,
        "one_call_each_s_per_point": single,
        "one_call_each_extrapolated_s": single * epochs * keys,
    }


def _per_epoch(variant: str, epochs: int, epoch_s: float, flush_every_s: float) -> float:
    """In one process: the seconds a logger adds to each epoch (its ``on_epoch_end``, its
    sends amortized), over ``epochs`` epochs of 10 metrics and 12 optimizer steps, with a clock
    that moves ``epoch_s`` a epoch. Far less exposed to a loaded machine than whole fits."""
    import torch

    from skier.history import History
    from skier.train import MLflowLogger, TensorBoardLogger, TrainState

    warnings.simplefilter("ignore", DeprecationWarning)
    folder = Path(tempfile.mkdtemp())
    now = [0.0]
    history = History()
    names = ["loss", "val_loss", *(f"metric_{i}" for i in range(8))]
    state = TrainState(torch.nn.Linear(1, 1), epochs=epochs, task="regression", history=history,
                       available_keys=frozenset(names))  # fmt: skip
    if variant == "tensorboard":
        logger: Any = TensorBoardLogger(folder / "tb", flush_every_s=flush_every_s)
    else:
        logger = MLflowLogger(f"sqlite:///{folder / 'mlflow.db'}", flush_every_s=flush_every_s)
    logger._clock = lambda: now[0]
    logger.on_fit_start(state)
    spent = 0.0
    for epoch in range(1, epochs + 1):
        state.epoch = epoch
        history.append({"epoch": epoch, **{k: 1.0 / epoch for k in names}})
        for _ in range(12):
            history.add_step("lr", 1e-3)
        now[0] += epoch_s
        t0 = time.perf_counter()
        logger.on_epoch_end(state, history.rows[-1])
        spent += time.perf_counter() - t0
    assert logger.failure is None, logger.failure
    return spent / epochs


def _run_child(workload: str, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", workload, variant, "--w1-samples",
               str(args.w1_samples), "--epochs", str(args.epochs),
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
    parser.add_argument("--epochs", type=int, default=10, help="measured epochs per process")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--w1-samples", type=int, default=0, help="0: the suite's 60,000")
    parser.add_argument("--bulk-epochs", type=int, default=1000)
    parser.add_argument("--bulk-sample", type=int, default=200, help="single calls timed")
    parser.add_argument("--note", default="")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.child:
        found = _child(args.child[0], args.child[1], args.smoke, args.w1_samples, args.epochs)
        print(json.dumps(found))
        return
    rounds = 1 if args.smoke else args.rounds
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        w: {v: [] for v in VARIANTS} for w in args.workloads
    }
    for r in range(rounds):
        for workload in args.workloads:
            for variant in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
                found = _run_child(workload, variant, args)
                runs[workload][variant].append(found)
                shown = found.get("error") or (
                    f"median epoch {found['median_epoch_s']:.4f} s, outside epochs "
                    f"{found['outside_epochs_s']:.2f} s"
                )
                print(f"round {r + 1} {workload} {variant:11s} {shown}", flush=True)
    summary: dict[str, Any] = {}
    verdicts = []
    for workload, by_variant in runs.items():
        summary[workload] = {}
        for variant in VARIANTS[1:]:
            ratios = [
                v["median_epoch_s"] / p["median_epoch_s"]
                for p, v in zip(by_variant["off"], by_variant[variant], strict=True)
                if "error" not in p and "error" not in v
            ]
            ratio = statistics.median(ratios) if ratios else None
            summary[workload][f"{variant}_ratio"] = ratio
            summary[workload][f"{variant}_ratios_per_round"] = ratios
            limit = TARGETS[workload]
            verdicts.append({"target": f"{variant} at {workload} <= {limit}", "value": ratio,
                             "met": ratio is not None and ratio <= limit})  # fmt: skip
            print(f"{workload} {variant}/off: {ratio if ratio is None else round(ratio, 4)} "
                  f"(per round: {', '.join(f'{x:.3f}' for x in ratios)})")  # fmt: skip
    per_epoch = {}
    n = 20 if args.smoke else 300
    for variant in VARIANTS[1:]:
        for epoch_s, flush in ((0.05, 5.0), (0.05, 0.0)):
            cost = _per_epoch(variant, n, epoch_s, flush)
            per_epoch[f"{variant} flush_every_s={flush}"] = cost
            print(f"in-process {variant}, flush every {flush} s (epochs of {epoch_s} s): "
                  f"{cost * 1e6:.0f} us per epoch = {cost / epoch_s:.2%} of the epoch")  # fmt: skip
    bulk = _bulk(20 if args.smoke else args.bulk_epochs, 10, 20 if args.smoke else args.bulk_sample)
    print(f"MLflow {bulk['points']} points batched: {bulk['batched_s']:.2f} s; one log_metric "
          f"call each: {bulk['one_call_each_s_per_point'] * 1e3:.1f} ms a point, "
          f"~{bulk['one_call_each_extrapolated_s']:.0f} s for all")  # fmt: skip
    verdicts.append({"target": "1,000 x 10 points to MLflow < 5 s", "value": bulk["batched_s"],
                     "met": bulk["batched_s"] < 5.0})  # fmt: skip
    for v in verdicts:
        print(f"target {v['target']}: {'met' if v['met'] else 'NOT MET'} ({v['value']})")
    record = {
        "date": dt.date.today().isoformat(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "omp_threads": os.environ.get("OMP_NUM_THREADS"),
        "smoke": args.smoke,
        "rounds": rounds,
        "epochs": args.epochs,
        "w1_samples": args.w1_samples or 60_000,
        "note": args.note,
        "summary": summary,
        "mlflow_bulk": bulk,
        "in_process_per_epoch_s": per_epoch,
        "targets": verdicts,
        "runs": runs,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
