"""`skier train` with gradient flow on: a CSV and a figure in the run directory and report."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from skier.record import RunStore, default_store_url

Runner = Any
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _only_run(root: Path) -> Path:
    runs = [p for p in root.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.slow
def test_train_with_gradient_flow_writes_csv_and_figure(skier_cli: Runner, tmp_path: Path) -> None:
    proc = skier_cli(
        "train",
        str(EXAMPLES / "digits_mlp.yaml"),
        "--set",
        "diagnostics.gradient_flow_every=5",
        "--set",
        "train.epochs=2",
        "--out",
        "runs",
    )
    assert proc.returncode == 0, proc.stderr
    run = _only_run(tmp_path / "runs")
    png = run / "gradient_flow.png"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with (run / "gradient_flow.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "layer", "grad_norm", "weight_norm", "update_ratio"]
    steps = sorted({int(r["step"]) for r in rows})
    assert steps[0] == 5 and all(s % 5 == 0 for s in steps)
    assert steps == list(range(5, steps[-1] + 1, 5))
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    assert len(layers) >= 2 and all(name.endswith("weight") for name in layers)
    assert all(float(r["grad_norm"]) > 0 and float(r["update_ratio"]) > 0 for r in rows)
    assert "Gradient flow" in (run / "report.html").read_text()

    result = json.loads((run / "result.json").read_text())
    with RunStore(default_store_url(tmp_path / "runs")) as store:
        names = {a.name: a.kind for a in store.artifacts(result["run_id"])}
    assert names["gradient_flow.csv"] == "csv" and names["gradient_flow.png"] == "figure"


def test_train_without_gradient_flow_writes_none(skier_cli: Runner, tmp_path: Path) -> None:
    proc = skier_cli("train", "--set", "train.epochs=1", "--out", "runs", "-q")
    assert proc.returncode == 0, proc.stderr
    run = _only_run(tmp_path / "runs")
    assert not (run / "gradient_flow.csv").exists() and not (run / "gradient_flow.png").exists()
