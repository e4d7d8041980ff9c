"""``skier train CONFIG --nproc 2``: torchrun, gloo on CPU, rank 0 records, a failed rank."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
import torch

from skier.record import RunStore
from skier.train import load_checkpoint

from .conftest import Runner

# A model that SIGKILLs its own process on one rank at its Nth training forward pass: a rank
# that dies mid-epoch, as after an out-of-memory kill. Ranks are told apart by torchrun's RANK.
CRASHY = """
import math, os, signal
from torch import nn

class Crashy(nn.Module):
    def __init__(self, input_shape, output_size, crash_rank=-1, crash_after=0):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 32), nn.ReLU(),
                                 nn.Linear(32, output_size))
        self.crash_rank, self.crash_after, self.calls = crash_rank, crash_after, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if os.environ.get("RANK") == str(self.crash_rank) and self.calls == self.crash_after:
                os.kill(os.getpid(), signal.SIGKILL)
        return self.net(x)
"""

# 600 synthetic examples: 360 for training, a global batch of 64 → 6 steps (forward passes) per
# epoch on every rank; the 15th forward pass is in epoch 3, after epoch 2's checkpoint.
# checkpoint.every_s 0: every epoch's checkpoint is on disk before the next epoch starts. With
# skier train's 10 s throttle these millisecond epochs' checkpoints are held in memory and
# written only by rank 0's flush when torchrun stops it: at load ~6 (other sessions' tests) that
# left no last.pt in two runs. This test is about the killed rank and the resume.
CONFIG = """
data: {name: synthetic, samples: 600, features: 10, classes: 3}
model: {name: "crashy:Crashy", kwargs: {crash_rank: 1, crash_after: 15}}
train: {epochs: 4, batch_size: 64, device: cpu}
checkpoint: {every_s: 0}
record: {plots: false, report: false}
"""


def _rows(run_dir: Path) -> list[dict[str, float]]:
    with (run_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))  # an empty cell: no value that epoch (SWA not begun)
    return [{k: float(v or "nan") for k, v in r.items() if k != "epoch_time"} for r in rows]


def test_bad_launch_settings_are_reported_at_once(skier_cli: Runner, tmp_path: Path) -> None:
    done = skier_cli("train", "--nproc", "0", "--nnodes", "2", "--node-rank", "5")
    assert done.returncode == 2, done.stderr
    assert "3 problems" in done.stderr
    assert "--nproc must be an integer >= 1; got 0." in done.stderr
    assert "--node-rank must be in [0, 2); got 5." in done.stderr
    assert "--rdzv-endpoint must be HOST:PORT of node 0 when --nnodes > 1" in done.stderr
    gpu = skier_cli("train", "--nproc", "2", "--set", "train.device=cuda")
    assert gpu.returncode == 2
    assert "--nproc must be at most the number of GPUs (0)" in gpu.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_killed_rank_ends_the_job_and_the_run_resumes(skier_cli: Runner, tmp_path: Path) -> None:
    (tmp_path / "crashy.py").write_text(CRASHY)
    (tmp_path / "cfg.yaml").write_text(CONFIG)
    started = time.perf_counter()
    crashed = skier_cli("train", "cfg.yaml", "--nproc", "2", timeout=120)
    assert time.perf_counter() - started < 120  # no rank hangs
    assert crashed.returncode == 1, crashed.stderr
    last = crashed.stderr.strip().splitlines()[-1]
    assert last.startswith("skier: error: rank 1 was killed by signal SIGKILL;"), last
    assert "resume with skier train --resume runs/" in last
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]  # rank 0's only
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"] == 2  # intact
    with RunStore(f"sqlite:///{tmp_path / 'runs' / 'skier.db'}") as store:
        record = store.get_run(run_dir.name)
        assert record.status == "failed" and "rank 1" in (record.error or "")

    resumed = skier_cli("train", "--resume", str(run_dir), "--nproc", "2", timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    lines = resumed.stdout.splitlines()
    assert [ln.split()[1] for ln in lines if ln.startswith("epoch ")] == ["3/4", "4/4"]  # rank 0
    single = skier_cli("train", "cfg.yaml", "--set", "model.kwargs.crash_rank=-1", "--out", "one")
    assert single.returncode == 0, single.stderr
    (single_dir,) = [p for p in (tmp_path / "one").iterdir() if p.is_dir()]
    expected, got = _rows(single_dir), _rows(run_dir)
    assert len(got) == len(expected) == 4
    for want, row in zip(expected, got, strict=True):  # the same run as one process
        for key, value in want.items():
            assert row[key] == pytest.approx(value, rel=1e-4), key
    with RunStore(f"sqlite:///{tmp_path / 'runs' / 'skier.db'}") as store:
        assert store.get_run(run_dir.name).status == "completed"
        assert len(store.list_runs()) == 1


@pytest.mark.slow
def test_a_distributed_swa_run_resumes_as_one_process_runs(
    skier_cli: Runner, tmp_path: Path
) -> None:
    # SWA from epoch 2 with the average selected, rank 1 killed in epoch 3 (after epoch 2's
    # checkpoint, which holds the average): the resumed job ends where one process does.
    (tmp_path / "crashy.py").write_text(CRASHY)
    (tmp_path / "cfg.yaml").write_text(CONFIG)
    swa = ["--set", "train.swa_start=2", "--set", "train.swa_lr=0.05",
           "--set", "train.average_select=average"]  # fmt: skip
    crashed = skier_cli("train", "cfg.yaml", "--nproc", "2", *swa, timeout=120)
    assert crashed.returncode == 1, crashed.stderr
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["average"]["updates"] == 1
    resumed = skier_cli("train", "--resume", str(run_dir), "--nproc", "2", timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    single = skier_cli("train", "cfg.yaml", "--set", "model.kwargs.crash_rank=-1", *swa,
                       "--out", "one")  # fmt: skip
    assert single.returncode == 0, single.stderr
    (single_dir,) = [p for p in (tmp_path / "one").iterdir() if p.is_dir()]
    expected, got = _rows(single_dir), _rows(run_dir)
    assert len(got) == len(expected) == 4 and "val_swa_loss" in got[-1]
    for want, row in zip(expected, got, strict=True):
        for key, value in want.items():
            assert row[key] == pytest.approx(value, rel=1e-4, nan_ok=True), key
    averaged = load_checkpoint(run_dir / "checkpoints" / "last.pt")["average"]
    alone = load_checkpoint(single_dir / "checkpoints" / "last.pt")["average"]
    assert averaged["updates"] == alone["updates"] == 3
    for key, value in alone["averaged"].items():
        assert torch.allclose(averaged["averaged"][key].double(), value.double(), rtol=1e-4,
                              atol=1e-5), key  # fmt: skip
