"""`skier train` with weight averaging: both curves reach metrics.csv, the store and the figure."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from skier.config import load_config
from skier.record import RunDir
from skier.runner import run_training


@pytest.mark.parametrize(
    ("settings", "key"),
    [(["train.ema=0.9"], "val_ema_loss"),
     (["train.swa_start=2", "train.swa_lr=0.05", "train.average_select=average"],
      "val_swa_loss")],
)  # fmt: skip
def test_a_config_run_records_both_curves(tmp_path: Path, settings: list[str], key: str) -> None:
    overrides = [
        "data.name=digits", "model.hidden_sizes=[8]", "train.epochs=3", "train.batch_size=64",
        "optim.name=sgd", "optim.lr=0.1", "record.report=False", "checkpoint.enabled=False",
        *settings,
    ]  # fmt: skip
    outcome = run_training(load_config(None, overrides), out_dir=tmp_path, progress=False)
    assert outcome.status == "completed"
    run_dir = RunDir(outcome.run_dir)
    with run_dir.metrics_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert key in rows[0] and "val_loss" in rows[0]
    assert rows[-1][key] not in ("", "nan")
    assert run_dir.learning_curves_png.is_file()
    tag = key.split("_")[1]
    assert f"test_{tag}_loss" in outcome.result.test_metrics
