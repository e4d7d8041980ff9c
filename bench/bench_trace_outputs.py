"""Where the exact Hessian trace stops paying: its cost against the deflated Hutchinson
estimate's as the number of outputs C grows (``sharpness.trace_method: auto`` takes the exact
trace up to ``AUTO_MAX_OUTPUTS`` outputs).

The exact pass costs one forward and 2C backward passes a batch (and N·C² numbers); the
estimate costs ``trace_basis`` + ``trace_samples`` Hessian-vector products whatever C is. For
each C: a ReLU MLP d-h-C (skier's MLP) on N random inputs with random labels, the trace alone
(``top_k`` 1, the eigenvalue's products not counted: both paths share them) timed both ways,
interleaved, the median of the rounds; CPU time of this thread.

    OMP_NUM_THREADS=1 python bench/bench_trace_outputs.py --outputs 10 32 64 128 256 512
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from skier.data.types import Split
from skier.diagnostics._common import dot
from skier.diagnostics._ggn_trace import exact_trace
from skier.models.mlp import MLP
from skier.train.hessian import Hessian


def _case(outputs: int, n: int, d: int, h: int) -> tuple[torch.nn.Module, Split]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    y = torch.randint(0, outputs, (n,), generator=g)
    torch.manual_seed(0)
    return MLP(d, outputs, hidden_sizes=(h,)).eval(), Split((x,), y)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.thread_time()
    out = fn()
    return time.thread_time() - t, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=int, nargs="+", default=[10, 32, 64, 128, 256, 512])
    parser.add_argument("--examples", type=int, default=1437)
    parser.add_argument("--inputs", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--products", type=int, default=120, help="the estimate's (20 + 100)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2048)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    rows = []
    for c in args.outputs:
        model, split = _case(c, args.examples, args.inputs, args.hidden)
        params = [p for p in model.parameters()]
        hessian = Hessian(model, split, params, classification=True, batch_size=args.batch_size)
        g = torch.Generator().manual_seed(1)
        probes = [[torch.randint(0, 2, p.shape, generator=g).float() * 2 - 1 for p in params]
                  for _ in range(args.products)]  # fmt: skip
        exact_s, products_s = [], []
        value = 0.0
        for _ in range(args.rounds):
            t, value = _timed(lambda h=hessian: exact_trace(h))
            exact_s.append(t)
            t, _ = _timed(lambda h=hessian, vs=probes: [float(dot(v, h(v))) for v in vs])
            products_s.append(t)
        row = {"outputs": c, "exact_s": statistics.median(exact_s),
               "estimate_s": statistics.median(products_s), "trace": value}  # fmt: skip
        row["exact_over_estimate"] = row["exact_s"] / row["estimate_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(json.dumps({"load": load, "rows": rows}))


if __name__ == "__main__":
    main()
