"""Data-parallel training over NCCL with the GPUs present (one GPU: a world of size 1), as
``tests/train/test_distributed.py`` does it over gloo: processes spawned with a file rendezvous,
each writing what it saw; and ``skier train --nproc 1`` through torchrun on ``cuda``."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from skier.data import DataBundle
from skier.train import fit

from .conftest import digits_mlp

pytestmark = pytest.mark.cuda

SETTINGS: dict[str, Any] = {"epochs": 10, "batch_size": 64, "lr": 1e-3, "seed": 0,
                            "progress": "off", "device": "cuda"}  # fmt: skip


def _worker(rank: int, init: str, out: str, world: int) -> None:
    from skier.config import DataConfig
    from skier.data import load_data
    from skier.train.distributed import LaunchInfo, distributed_session

    data = load_data(DataConfig(name="digits"))
    launch = LaunchInfo(rank, world, local_rank=rank, init_method=f"file://{init}",
                        timeout_s=120)  # fmt: skip
    with distributed_session(launch, "cuda") as group:
        model = digits_mlp(data)
        result = fit(model, data, distributed=group, **SETTINGS)
        seen = {
            "backend": group.backend,
            "device": str(next(model.parameters()).device),
            "rows": result.history.rows,
            "test": result.test_metrics,
            "weights": {k: v.cpu() for k, v in model.state_dict().items()},
        }
    torch.save(seen, Path(out) / f"rank{rank}.pt")


def test_ddp_over_nccl_matches_one_process(digits: DataBundle, tmp_path: Path) -> None:
    world = torch.cuda.device_count()  # one process per GPU; one GPU: a world of size 1
    mp.start_processes(_worker, args=(str(tmp_path / "rendezvous"), str(tmp_path), world),
                       nprocs=world, start_method="spawn")  # fmt: skip
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world)]
    single = fit(digits_mlp(digits), digits, **SETTINGS)
    for r, seen in enumerate(ranks):
        assert seen["backend"] == "nccl" and seen["device"] == f"cuda:{r}"
        assert all(math.isfinite(v) for row in seen["rows"] for v in row.values())
        for key, w in seen["weights"].items():  # every rank ends with rank 0's weights
            assert torch.equal(w, ranks[0]["weights"][key]), (r, key)
    # the same run as one process, up to the order of float32 sums (the loss is summed per
    # share, then scaled)
    got, want = ranks[0]["test"]["test_accuracy"], single.test_metrics["test_accuracy"]
    assert abs(got - want) <= 0.02, (got, want)
    assert ranks[0]["rows"][-1]["loss"] == pytest.approx(single.history.rows[-1]["loss"], rel=0.1)


CONFIG = """
data: {name: digits}
model: {hidden_sizes: [128]}
train: {epochs: 3, batch_size: 64, device: cuda, amp: true}
record: {plots: false, report: false}
"""


def test_skier_train_nproc_1_runs_through_torchrun_on_nccl(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text(CONFIG)
    env = {**os.environ, "CI": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "skier", "train", "cfg.yaml", "--nproc", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    with (run_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(float(r["epoch"])) for r in rows] == [1, 2, 3]
    assert all(math.isfinite(float(v)) for r in rows for v in r.values() if v)
    assert (run_dir / "checkpoints" / "last.pt").is_file()
