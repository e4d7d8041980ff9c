"""The cost of `skier train`'s recording (issue 22), in one process, interleaved: for W3 and W4
of the suite, each round runs

  fit_val    fit validated every epoch (the suite's skier_val)
  defaults   run_training as `skier train` runs (bar, checkpoints, run directory, metrics, store
             row) with its defaults: checkpoint.every_s 10, record.flush_every_s 1
  per_epoch  the same with checkpoint.every_s 0 and record.flush_every_s 0: everything written
             every epoch (as before the throttle)

each timed from one epoch's end to the next (the warm-up epoch left out), on data loaded once.
A ratio is taken within each round (the machine's load drifts less within a round) and the
median over rounds is reported, with the median epoch times.

    python bench/bench_recording.py --rounds 5 --threads 1 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import _clock, _run_config, _spec

MODES = ("fit_val", "defaults", "per_epoch")


def _epochs(workload: str, mode: str, data: Any) -> list[float]:
    import torch

    from skier.models import build_model
    from skier.runner import run_training
    from skier.train import fit

    config = _run_config(workload, smoke=False)
    marks: list[float] = []
    if mode == "fit_val":
        torch.manual_seed(0)
        model = build_model(config.model, input_shape=data.input_shape,
                            output_size=data.output_size)  # fmt: skip
        spec = _spec(workload, smoke=False)
        fit(model, data.train, data.val, epochs=spec["epochs"] + 1, batch_size=spec["batch"],
            lr=1e-3, seed=0, progress="off", callbacks=[_clock(marks)])  # fmt: skip
    else:
        if mode == "per_epoch":
            config = config.model_copy(update={
                "checkpoint": config.checkpoint.model_copy(update={"every_s": 0.0}),
                "record": config.record.model_copy(update={"flush_every_s": 0.0}),
            })  # fmt: skip
        with tempfile.TemporaryDirectory() as out, contextlib.redirect_stderr(io.StringIO()):
            run_training(config, out_dir=out, progress=True, data=data,
                         callbacks=[_clock(marks)])  # fmt: skip
    return [b - a for a, b in itertools.pairwise(marks)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["W3", "W4"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import torch

    from skier.data import load_data

    torch.set_num_threads(args.threads)
    record: dict[str, Any] = {"threads": args.threads, "rounds": args.rounds, "workloads": {}}
    for workload in args.workloads:
        data = load_data(_run_config(workload, smoke=False).data)
        times: dict[str, list[list[float]]] = {m: [] for m in MODES}
        for r in range(args.rounds):
            for mode in MODES if r % 2 == 0 else MODES[::-1]:
                t0 = time.perf_counter()
                times[mode].append(_epochs(workload, mode, data))
                print(f"{workload} round {r + 1} {mode:9s} median epoch "
                      f"{statistics.median(times[mode][-1]) * 1e3:.2f} ms "
                      f"({time.perf_counter() - t0:.1f} s)", flush=True)  # fmt: skip
        medians = {m: [statistics.median(t) for t in times[m]] for m in MODES}
        found = {
            "median_epoch_ms": {m: statistics.median(v) * 1e3 for m, v in medians.items()},
            "defaults_over_fit_val": statistics.median(
                d / f for d, f in zip(medians["defaults"], medians["fit_val"], strict=True)
            ),
            "per_epoch_over_fit_val": statistics.median(
                p / f for p, f in zip(medians["per_epoch"], medians["fit_val"], strict=True)
            ),
        }
        record["workloads"][workload] = found
        print(f"{workload}: " + ", ".join(f"{m} {v:.2f} ms" for m, v in
                                          found["median_epoch_ms"].items())
              + f"; defaults / fit_val {found['defaults_over_fit_val']:.3f}, per_epoch / fit_val "
              f"{found['per_epoch_over_fit_val']:.3f} (medians of the rounds' ratios)")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
