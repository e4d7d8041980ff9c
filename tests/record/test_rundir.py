from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from skier.errors import StoreError, WriteError
from skier.history import History
from skier.record import RunDir, capture_environment, new_run_id


def test_new_run_id_is_sortable_and_unique() -> None:
    ids = {new_run_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", i) for i in ids)


def test_create_makes_the_layout(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "runs", "20260101-000000-abcdef")
    assert run.path == tmp_path / "runs" / "20260101-000000-abcdef"
    assert run.run_id == "20260101-000000-abcdef"
    assert run.checkpoints.is_dir()
    assert run.config_path.name == "config.yaml"
    assert run.metrics_csv.name == "metrics.csv"
    assert run.result_json.name == "result.json"
    assert run.learning_curves_png.name == "learning_curves.png"
    assert run.report_html.name == "report.html"
    with pytest.raises(StoreError, match="run directory must be new"):
        RunDir.create(tmp_path / "runs", "20260101-000000-abcdef")
    assert RunDir.create(tmp_path / "runs", run.run_id, exist_ok=True).path == run.path


def test_writes_round_trip_and_leave_no_temp_files(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "r")
    run.write_config("optim:\n  lr: 0.1\n")
    history = History()
    history.extend([{"epoch": 1, "loss": 1.0, "val_loss": 1.5}, {"epoch": 2, "loss": 0.5}])
    run.write_metrics(history)
    run.write_result({"status": "completed", "best": math.nan, "test": {"loss": math.inf}})

    assert run.config_path.read_text() == "optim:\n  lr: 0.1\n"
    assert run.read_metrics().to_dict() == history.to_dict()
    assert run.read_result() == {"status": "completed", "best": None, "test": {"loss": None}}
    json.loads(run.result_json.read_text())  # strict JSON: no NaN / Infinity tokens
    assert sorted(p.name for p in run.path.iterdir()) == [
        "checkpoints",
        "config.yaml",
        "metrics.csv",
        "result.json",
    ]


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = RunDir.create(tmp_path, "r")
    run.write_result({"version": 1})

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(WriteError, match=r"result\.json' must be writable; got 'disk full'"):
        run.write_result({"version": 2})
    monkeypatch.undo()
    assert run.read_result() == {"version": 1}
    assert [p.name for p in run.path.iterdir() if p.name.endswith(".tmp")] == []


def test_read_result_errors(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "r")
    with pytest.raises(StoreError, match="result file must exist"):
        run.read_result()
    run.result_json.write_text("[1, 2]")
    with pytest.raises(StoreError, match="result file must hold a JSON object"):
        run.read_result()
    with pytest.raises(StoreError, match="metrics file must exist"):
        run.read_metrics()


def test_capture_environment() -> None:
    env = capture_environment()
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["cpu_count"] == os.cpu_count()
    assert set(env["packages"]) >= {"torch", "numpy", "scikit-learn"}
    json.dumps(env)  # JSON-ready


def test_read_side_never_imports_torch() -> None:
    code = (
        "import sys, skier.record, skier.plots, skier.report\n"
        "skier.record.capture_environment()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
