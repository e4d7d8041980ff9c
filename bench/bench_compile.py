"""``train.compile`` on against off (issue 22): compile time and epoch time at W1 and W3.

W1: MLP 784-256-128-10, Adam, batch 128, synthetic 60,000 x 784 (2 measured epochs);
W3: MLP 64-128-10 on digits, batch 64 (30 measured epochs); the suite's own configs
(``suite._run_config``). Each round is one fresh process that runs ``fit`` four times, compile
and plain interleaved (on off off on, then off on on off in the next round), so both see the
same machine load. In each process the first compiled fit pays the compile (its first epoch);
the second finds torch's in-process caches warm. ``--cold`` gives every process a fresh
inductor cache directory (no compiled kernels on disk from earlier runs): what a first run on a
new machine pays.

Reported per workload and thread count: the compile time (the compiled fit's first epoch less
its median epoch), the median and fastest epoch of each, and on / off.

Usage::

    python bench/bench_compile.py --rounds 3 --threads 1 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _child(workload: str, threads: int, order: list[bool]) -> dict[str, Any]:
    import warnings

    import torch

    from skier.data import load_data
    from skier.models import build_model
    from skier.train import fit
    from suite import _run_config, _spec

    warnings.simplefilter("ignore", DeprecationWarning)  # torch's own, from inductor's imports
    torch.set_num_threads(threads)
    spec, config = _spec(workload, False), _run_config(workload, False)
    data = load_data(config.data)
    fits = []
    for compile_on in order:
        torch.manual_seed(0)
        model = build_model(config.model, input_shape=data.input_shape,
                            output_size=data.output_size)  # fmt: skip
        t0 = time.perf_counter()
        result = fit(model, data.train, epochs=spec["epochs"] + 1, batch_size=spec["batch"],
                     lr=1e-3, seed=0, progress="off", device="cpu",
                     compile=compile_on)  # fmt: skip
        times = result.history.column("epoch_time")
        fits.append({
            "compile": compile_on, "wall_s": time.perf_counter() - t0, "first_epoch_s": times[0],
            "epoch_times": times[1:], "final_loss": result.history.column("loss")[-1],
        })  # fmt: skip
    return {"workload": workload, "threads": threads, "fits": fits}


def _summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, on in (("on", True), ("off", False)):
        fits = [f for r in rounds for f in r["fits"] if f["compile"] is on]
        firsts = [next(f for f in r["fits"] if f["compile"] is on) for r in rounds]
        epochs = [t for f in fits for t in f["epoch_times"]]
        median = statistics.median(epochs)
        out[name] = {
            "median_epoch_s": median,
            "min_epoch_s": min(epochs),
            "first_epoch_s": statistics.median(f["first_epoch_s"] for f in firsts),
            "final_losses": sorted({round(f["final_loss"], 6) for f in fits}),
        }
        # the first fit of its kind in each process: its first epoch less a usual epoch
        out[name]["start_cost_s"] = [f["first_epoch_s"] - median for f in firsts]
    out["compile_s_median"] = statistics.median(out["on"]["start_cost_s"])
    out["compile_s_min"] = min(out["on"]["start_cost_s"])
    out["on_over_off_median"] = out["on"]["median_epoch_s"] / out["off"]["median_epoch_s"]
    out["on_over_off_fastest"] = out["on"]["min_epoch_s"] / out["off"]["min_epoch_s"]
    saved = out["off"]["median_epoch_s"] - out["on"]["median_epoch_s"]
    out["epochs_to_repay_compile"] = out["compile_s_median"] / saved if saved > 0 else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--workloads", nargs="+", default=["W3", "W1"], choices=["W1", "W3"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="a fresh inductor cache per process")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.child:
        workload, threads, order = args.child
        print(json.dumps(_child(workload, int(threads), [c == "1" for c in order])))
        return
    record: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "cold": args.cold, "runs": {}}
    for workload in args.workloads:
        for threads in args.threads:
            rounds = []
            for r in range(args.rounds):
                order = "1001" if r % 2 == 0 else "0110"
                env = dict(os.environ)
                with tempfile.TemporaryDirectory(prefix="skier-inductor-") as cache:
                    if args.cold:
                        env["TORCHINDUCTOR_CACHE_DIR"] = cache
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", workload, str(threads), order],
                        capture_output=True, text=True, check=True, timeout=1800, env=env,
                    )  # fmt: skip
                found = json.loads(out.stdout.strip().splitlines()[-1])
                rounds.append(found)
                shown = ", ".join(
                    f"{'on' if f['compile'] else 'off'} first {f['first_epoch_s']:.2f} s "
                    f"median {statistics.median(f['epoch_times']) * 1e3:.1f} ms"
                    for f in found["fits"]
                )
                print(f"{workload} threads {threads} round {r + 1}: {shown}", flush=True)
            summary = _summary(rounds)
            record["runs"][f"{workload}/t{threads}"] = {"rounds": rounds, "summary": summary}
            print(
                f"{workload} threads {threads}: compile {summary['compile_s_median']:.1f} s "
                f"(min {summary['compile_s_min']:.1f}); epoch on/off median "
                f"{summary['on_over_off_median']:.3f}, fastest {summary['on_over_off_fastest']:.3f}"
                f" (off {summary['off']['median_epoch_s'] * 1e3:.1f} ms, on "
                f"{summary['on']['median_epoch_s'] * 1e3:.1f} ms); losses off "
                f"{summary['off']['final_losses']} on {summary['on']['final_losses']}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
