"""The per-batch path of two skier checkouts, A/B, on the digits MLP (W3's shapes), one thread.

W3's epochs last 15-40 ms on 2 cores, so the suite's few epochs per process resolve only large
differences there. This runs ``fit`` for 40 measured epochs per process (one warm-up epoch
dropped), each checkout in a fresh process with its ``src`` first on ``PYTHONPATH``,
interleaved A B A B ... over ``--rounds``, with one torch thread, and reports per process the
median and the fastest epoch, then the ratio B / A of the medians over rounds of each.

Usage::

    python bench/per_batch_ab.py --a ../base/src --b src --rounds 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

CHILD = """
import json, torch
torch.set_num_threads(1)
from skier.config import RunConfig
from skier.data import load_data
from skier.models import build_model
from skier.train import fit
cfg = RunConfig.model_validate({"model": {"hidden_sizes": [128]}})
data = load_data(cfg.data)
torch.manual_seed(0)
model = build_model(cfg.model, input_shape=data.input_shape, output_size=data.output_size)
r = fit(model, data.train, epochs=41, batch_size=64, lr=1e-3, seed=0, progress="off",
        device="cpu")
t = sorted(r.history.column("epoch_time")[1:])
print(json.dumps({"median": t[len(t) // 2], "min": t[0], "loss": r.history.column("loss")[-1]}))
"""


def _child(src: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src.resolve())}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                         check=True, timeout=600)  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="src of the checkout before")
    parser.add_argument("--b", type=Path, required=True, help="src of the checkout after")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    for r in range(args.rounds):
        for name in ("a", "b") if r % 2 == 0 else ("b", "a"):
            found = _child(getattr(args, name))
            runs[name].append(found)
            print(f"round {r + 1} {name}: median {found['median'] * 1e3:.2f} ms, "
                  f"fastest {found['min'] * 1e3:.2f} ms")  # fmt: skip
    summary = {
        name: {key: statistics.median(x[key] for x in found) for key in ("median", "min")}
        for name, found in runs.items()
    }
    ratio = {key: summary["b"][key] / summary["a"][key] for key in ("median", "min")}
    same = {x["loss"] for x in runs["a"]} == {x["loss"] for x in runs["b"]}
    print(f"b / a: medians {ratio['median']:.3f}, fastest epochs {ratio['min']:.3f}; "
          f"the same final loss: {same}")  # fmt: skip
    if args.json:
        record = {"a": str(args.a), "b": str(args.b), "rounds": args.rounds, "runs": runs,
                  "summary": summary, "ratio_b_over_a": ratio, "same_loss": same}  # fmt: skip
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
