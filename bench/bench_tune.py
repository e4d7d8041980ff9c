"""Benchmark ``skier tune``: the issue's acceptance figure and what pruning saves.

Runs, as a user would (``python -m skier tune``, CI=true, quiet)::

    skier tune examples/digits_cnn_cv.yaml --space examples/space_digits.yaml \\
        --method bayes --trials 30 --workers 2 --prune median --objective val_accuracy

and reports the wall time of the whole search, the best validation accuracy and its config,
the trials by state and the epochs run. Then it runs the same search with ``--prune none`` (same
seed, so the same sampler) and reports the epochs run without pruning: the saving is
``1 - epochs(pruned) / epochs(none)``. The best trial's config is also trained once more with
``skier train`` to show the result is reproducible and to give its test accuracy.

Usage::

    python bench/bench_tune.py                     # both searches (about 5-10 minutes)
    python bench/bench_tune.py --trials 6 --quick  # a smoke test
    python bench/bench_tune.py --json bench/results/2026-11-22-tune.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _skier(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "CI": "true"}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "skier", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"skier {' '.join(args[:1])} failed with status {proc.returncode}")
    return proc, seconds


def _run_dir(stdout: str, cwd: Path) -> Path:
    path = Path(stdout.split("run directory: ")[1].splitlines()[0])
    return path if path.is_absolute() else cwd / path


def search(prune: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    command = [
        "tune", str(ROOT / "examples/digits_cnn_cv.yaml"),
        "--space", str(ROOT / "examples/space_digits.yaml"),
        "--method", "bayes", "--trials", str(args.trials), "--workers", str(args.workers),
        "--prune", prune, "--objective", "val_accuracy", "--seed", str(args.seed),
        "--out", str(work / prune), "-q",
    ]  # fmt: skip
    if args.quick:
        command += ["--set", "train.epochs=5"]
    proc, seconds = _skier(command, work)
    run_dir = _run_dir(proc.stdout, work)
    result = json.loads((run_dir / "result.json").read_text())
    best = result["best"]
    best_trial = next(t for t in result["trials"] if t["number"] == best["number"])
    return {
        "command": "skier " + " ".join(command),
        "prune": prune,
        "wall_s": seconds,
        "search_s": result["duration_s"],
        "best_val_accuracy": best["value"],
        "best_params": best["params"],
        "best_trial": best["number"],
        "best_epochs": best_trial["epochs"],
        "counts": result["counts"],
        "epochs_run": result["epochs_run"],
        "run_dir": str(run_dir),
        "best_config": result.get("best_config"),
        "stdout": proc.stdout,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="5 epochs per trial (smoke test)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the --prune none run")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()

    import optuna
    import torch

    from skier import __version__

    work = Path(tempfile.mkdtemp(prefix="skier-bench-tune-"))
    runs = [search("median", args, work)]
    if not args.no_baseline:
        runs.append(search("none", args, work))
    pruned = runs[0]
    retrain, retrain_s = _skier(["train", pruned["best_config"], "--out", str(work / "best"),
                                 "-q"], work)  # fmt: skip
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": {
            "skier": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "optuna": optuna.__version__,
        },
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "runs": [{k: v for k, v in r.items() if k != "stdout"} for r in runs],
        "retrain": {"wall_s": retrain_s, "summary": retrain.stdout.splitlines()[-6:]},
    }
    if len(runs) == 2:
        saving = 1.0 - runs[0]["epochs_run"] / max(runs[1]["epochs_run"], 1)
        report["pruning_saving"] = {
            "epochs_with_pruning": runs[0]["epochs_run"],
            "epochs_without_pruning": runs[1]["epochs_run"],
            "saving": saving,
            "time_with_pruning_s": runs[0]["search_s"],
            "time_without_pruning_s": runs[1]["search_s"],
        }
    text = json.dumps(report, indent=2)
    print(text)
    for r in runs:
        print(f"\n--- prune {r['prune']} ---\n{r['stdout']}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
