"""Bad input: exit status 2, every problem once, one line each, no traceback, nothing written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

Runner = Any


def _assert_clean_error(proc, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("skier: error: ")
    for fragment in fragments:
        assert proc.stderr.count(fragment) == 1, (fragment, proc.stderr)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("yaml_text", "fragments"),
    [
        ("optim:\n  lrr: 0.1\n", ["optim.lrr is not a known setting. Did you mean 'lr'?"]),
        ("optim:\n  lr: 0\n", ["optim.lr must be greater than 0; got 0."]),
        ("train:\n  batch_size: 0\n", ["train.batch_size must be greater than or equal to 1"]),
        ("data:\n  val_fraction: 1.5\n", ["data.val_fraction must be less than 1; got 1.5."]),
        ("train:\n  epochs: many\n", ["train.epochs must be a valid integer"]),
        (
            "optim:\n  lr: -1\n  momentun: 0.9\ntrain:\n  batch_size: 0\n",
            ["3 problems:", "optim.lr", "momentun", "Did you mean 'momentum'?", "batch_size"],
        ),
        (
            "early_stopping:\n  enabled: true\n  monitor: val_los\n",
            ["EarlyStopping.monitor must be a key the loop produces; got 'val_los'", "val_loss"],
        ),
    ],
)
def test_bad_config_values(
    skier_cli: Runner, tmp_path: Path, yaml_text: str, fragments: list[str]
) -> None:
    cfg = _write(tmp_path / "run.yaml", yaml_text)
    proc = skier_cli("train", str(cfg), "--out", "runs")
    _assert_clean_error(proc, *fragments[:1])
    for fragment in fragments[1:]:
        assert fragment in proc.stderr
    assert not (tmp_path / "runs").exists(), "a rejected config must not create a run"


def test_missing_config_file(skier_cli: Runner) -> None:
    proc = skier_cli("train", "nope.yaml")
    _assert_clean_error(proc, "config file 'nope.yaml' does not exist.")


def test_bad_override(skier_cli: Runner) -> None:
    proc = skier_cli("train", "--set", "optim.lr=zero", "--out", "runs")
    _assert_clean_error(proc, "optim.lr must be a valid number")


def test_missing_data_file(skier_cli: Runner, tmp_path: Path) -> None:
    cfg = _write(tmp_path / "run.yaml", "data:\n  name: csv\n  path: missing.csv\n  target: y\n")
    proc = skier_cli("train", str(cfg), "--out", "runs")
    _assert_clean_error(proc, "data.path must be an existing CSV file", "missing.csv")


def test_csv_missing_target_column(skier_cli: Runner, tmp_path: Path) -> None:
    _write(tmp_path / "d.csv", "a,b,label\n1,2,x\n3,4,y\n")
    cfg = _write(tmp_path / "run.yaml", "data:\n  name: csv\n  path: d.csv\n  target: lable\n")
    proc = skier_cli("train", str(cfg), "--out", "runs")
    _assert_clean_error(proc, "lable")
    assert "Did you mean 'label'?" in proc.stderr


def test_csv_non_numeric_values_in_numeric_column(skier_cli: Runner, tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{'oops' if i == 3 else i * 2},{i % 2}" for i in range(40))
    _write(tmp_path / "d.csv", "a,b,label\n" + rows + "\n")
    cfg = _write(
        tmp_path / "run.yaml",
        "data:\n  name: csv\n  path: d.csv\n  target: label\n  numeric_columns: [a, b]\n",
    )
    proc = skier_cli("train", str(cfg), "--out", "runs")
    _assert_clean_error(proc)
    assert "'b'" in proc.stderr and "oops" in proc.stderr


def test_unknown_verb_and_option_exit_2(skier_cli: Runner) -> None:
    assert skier_cli("trian").returncode == 2
    assert skier_cli("train", "--bogus").returncode == 2


def test_resume_needs_a_run_directory(skier_cli: Runner, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = skier_cli("train", "--resume", "empty")
    _assert_clean_error(proc, "no config.yaml")
