"""`skier train`, `skier runs`, `skier config show` and exact resume after SIGKILL, end to end."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from skier.record import RunStore, default_store_url
from skier.train import load_checkpoint

Runner = Any
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _only_run(root: Path) -> Path:
    runs = [p for p in root.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_config_show_prints_resolved_defaults(skier_cli: Runner) -> None:
    proc = skier_cli("config", "show", "--set", "optim.lr=0.5")
    assert proc.returncode == 0, proc.stderr
    assert "lr: 0.5" in proc.stdout and "batch_size: 128" in proc.stdout
    assert "patience: 10" in proc.stdout


def test_train_writes_run_directory_and_store_row(skier_cli: Runner, tmp_path: Path) -> None:
    proc = skier_cli(
        "train",
        str(EXAMPLES / "digits_mlp.yaml"),
        "--set",
        "train.epochs=3",
        "--set",
        "record.name=<b>tiny</b>",
        "--out",
        "runs",
    )
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1/3  loss " in proc.stdout and "epoch 3/3  loss " in proc.stdout
    assert "\r" not in proc.stdout + proc.stderr  # no progress bar where there is no terminal
    quiet = skier_cli("train", "--set", "train.epochs=1", "--out", "quiet", "-q")
    assert quiet.returncode == 0 and "epoch 1/1" not in quiet.stdout
    run = _only_run(tmp_path / "runs")
    for name in ("config.yaml", "metrics.csv", "result.json", "learning_curves.png", "report.html"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "last.pt").is_file()
    assert (run / "checkpoints" / "best.pt").is_file()
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "completed" and result["epochs_done"] == 3
    assert 0.0 <= result["test_metrics"]["test_accuracy"] <= 1.0
    assert "epochs: 3" in (run / "config.yaml").read_text()
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 4
    lr_lines = (run / "lr.csv").read_text().strip().splitlines()
    assert lr_lines[0] == "step,lr" and lr_lines[1] == "1,0.001"
    assert len(lr_lines) == 1 + 3 * 17  # 1,077 training examples, batch 64: 17 steps an epoch
    report = (run / "report.html").read_text()
    assert "<b>tiny</b>" not in report and "&lt;b&gt;tiny&lt;/b&gt;" in report
    with RunStore(default_store_url(tmp_path / "runs")) as store:
        record = store.get_run(run.name)
        assert record.status == "completed" and record.epochs_done == 3
        assert len(store.metrics(run.name)) == 3
        assert store.params(run.name)["train.epochs"] == "3"
    listing = skier_cli("runs", "--dir", "runs")
    assert listing.returncode == 0
    assert run.name in listing.stdout and "completed" in listing.stdout
    assert "test_accuracy=" in listing.stdout


def test_train_with_config_relative_csv(skier_cli: Runner, tmp_path: Path) -> None:
    proc = skier_cli(
        "train", str(EXAMPLES / "tabular_csv.yaml"), "--set", "train.epochs=2", "--out", "runs"
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((_only_run(tmp_path / "runs") / "result.json").read_text())
    assert result["model"]["class"] == "TabularNet"


FRAGILE_MODEL = '''
import torch

class Fragile(torch.nn.Module):
    """An MLP whose training output turns NaN after a number of batches (a diverging run)."""

    def __init__(self, input_shape, output_size, good_batches):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(input_shape[-1], output_size)
        )
        self.good_batches = good_batches
        self.calls = 0

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls > self.good_batches:
                out = out * float("nan")
        return out


def build(input_shape, output_size, good_batches):
    return Fragile(input_shape, output_size, good_batches)
'''


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(
    skier_cli: Runner, tmp_path: Path
) -> None:
    (tmp_path / "fragile.py").write_text(FRAGILE_MODEL)
    # digits: 1078 training examples, batch 128 -> 9 batches per epoch; NaN from epoch 3 on.
    (tmp_path / "run.yaml").write_text(
        "model: {name: 'fragile:build', kwargs: {good_batches: 20}}\n"
        "train: {epochs: 6, batch_size: 128}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "skier", "train", "run.yaml", "--out", "runs"],
        cwd=tmp_path, env={**os.environ, "CI": "true", "PYTHONPATH": str(tmp_path)},
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # a failure, with its record and checkpoint
    assert "non-finite training loss at epoch 3; kept epoch 2" in proc.stdout
    assert "Traceback" not in proc.stderr
    run = _only_run(tmp_path / "runs")
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "failed" and "non-finite" in result["stop_reason"]
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["epoch"] == 2
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    with RunStore(default_store_url(tmp_path / "runs")) as store:
        record = store.get_run(run.name)
        assert record.status == "failed" and record.epochs_done == 3
        assert "non-finite training loss at epoch 3" in (record.error or "")
        history = store.metrics(run.name)
        assert len(history) == 3 and math.isnan(history.column("loss")[2])
    epoch3 = (run / "metrics.csv").read_text().splitlines()[3].split(",")
    assert epoch3[0] == "3.0" and epoch3[1] == ""  # NaN is an empty cell in the CSV


SLOW_MODEL = '''
import time
import torch

class Slow(torch.nn.Module):
    """An MLP whose forward also sleeps, so an epoch lasts long enough to be killed in."""

    def __init__(self, input_shape, output_size):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(input_shape[-1], 32), torch.nn.ReLU(),
            torch.nn.Dropout(0.2), torch.nn.Linear(32, output_size),
        )

    def forward(self, x):
        if self.training:
            time.sleep(0.02)
        return self.net(x)


def build(input_shape, output_size):
    return Slow(input_shape, output_size)
'''

RESUME_CONFIG = """
data: {name: digits}
model: {name: "slowmodel:build"}
optim: {name: adam, lr: 0.003}
schedule: {name: cosine}
train: {epochs: 8, batch_size: 128}
early_stopping: {enabled: true, patience: 50}
# every epoch on disk at once (no time throttle): the kill lands after a fresh checkpoint;
# tests/reliability/test_throttled_checkpoints.py kills runs with the throttled defaults
checkpoint: {every_s: 0}
record: {flush_every_s: 0}
"""


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(skier_cli: Runner, tmp_path: Path) -> None:
    (tmp_path / "slowmodel.py").write_text(SLOW_MODEL)
    (tmp_path / "run.yaml").write_text(RESUME_CONFIG)
    env = {**os.environ, "CI": "true", "PYTHONPATH": str(tmp_path)}
    reference = subprocess.run(
        [sys.executable, "-m", "skier", "train", "run.yaml", "--out", "ref"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert reference.returncode == 0, reference.stderr

    victim = subprocess.Popen(
        [sys.executable, "-m", "skier", "train", "run.yaml", "--out", "killed"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    metrics = None
    while time.monotonic() < deadline:
        found = list((tmp_path / "killed").glob("*/metrics.csv"))
        if found and len(found[0].read_text().strip().splitlines()) >= 1 + 3:
            metrics = found[0]
            break
        time.sleep(0.02)
    assert metrics is not None, "the run never reached epoch 3"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    run = metrics.parent
    # Epoch 3 was logged; its checkpoint may or may not have been written when the kill came
    # (the record is written before the checkpoint), so the resume starts after epoch 2 or 3.
    killed_at = load_checkpoint(run / "checkpoints" / "last.pt")["epoch"]
    assert 2 <= killed_at < 8, killed_at

    resumed = subprocess.run(
        [sys.executable, "-m", "skier", "train", "--resume", str(run)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    want = load_checkpoint(_only_run(tmp_path / "ref") / "checkpoints" / "last.pt")
    got = load_checkpoint(run / "checkpoints" / "last.pt")
    assert got["epoch"] == want["epoch"] == 8
    for key, tensor in want["model"].items():
        assert torch.equal(tensor, got["model"][key]), key
    losses = [r["loss"] for r in got["history"]["rows"]]
    assert losses == [r["loss"] for r in want["history"]["rows"]]
    with RunStore(default_store_url(tmp_path / "killed")) as store:
        record = store.get_run(run.name)
        assert record.status == "completed" and record.epochs_done == 8
        assert len(store.metrics(run.name)) == 8


def test_resume_refuses_a_changed_setting(skier_cli: Runner, tmp_path: Path) -> None:
    proc = skier_cli(
        "train", str(EXAMPLES / "digits_mlp.yaml"), "--set", "train.epochs=2", "--out", "runs"
    )
    assert proc.returncode == 0, proc.stderr
    run = _only_run(tmp_path / "runs")
    changed = skier_cli(
        "train", str(EXAMPLES / "digits_mlp.yaml"), "--set", "optim.lr=0.1",
        "--set", "train.epochs=4", "--resume", str(run),
    )  # fmt: skip
    assert changed.returncode == 2
    assert "optim.lr must match the run being resumed (0.001); got 0.1." in changed.stderr
    longer = skier_cli("train", "--resume", str(run), "--set", "train.epochs=4")
    assert longer.returncode == 0, longer.stderr
    assert json.loads((run / "result.json").read_text())["epochs_done"] == 4


@pytest.mark.slow
def test_demo_reaches_097_on_digits(skier_cli: Runner, tmp_path: Path) -> None:
    proc = skier_cli("demo", "--out", "runs")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((_only_run(tmp_path / "runs") / "result.json").read_text())
    assert result["test_metrics"]["test_accuracy"] >= 0.97
    assert "test accuracy" in proc.stdout
