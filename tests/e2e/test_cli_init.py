"""`skier train` with init settings: the record's `init`, pretrained weights, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

Runner = Any


def _only_run(root: Path) -> Path:
    runs = [p for p in root.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def _assert_clean_error(proc: Any, fragment: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("skier: error: ")
    assert fragment in proc.stderr, proc.stderr


@pytest.mark.slow
def test_init_is_recorded_and_pretrained_loads_matching_layers(
    skier_cli: Runner, tmp_path: Path
) -> None:
    small = ("--set", "train.epochs=1", "--set", "model.hidden_sizes=[32]", "-q")
    first = skier_cli("train", "--set", "init.scheme=xavier_uniform", *small, "--out", "runs")
    assert first.returncode == 0, first.stderr
    run = _only_run(tmp_path / "runs")
    init = json.loads((run / "result.json").read_text())["init"]
    assert init["scheme"] == "xavier_uniform" and init["bias"] == "zeros"
    assert init["weights"] == ["blocks.0.linear.weight", "head.weight"]
    assert init["pretrained"] is None and init["loaded"] == []

    # A deeper net from the first run's checkpoint: the first layer fits, the head does not.
    # The path is relative to the config file's folder, not to the working folder.
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "finetune.yaml"
    config.write_text(
        "model: {hidden_sizes: [32, 16]}\n"
        "train: {epochs: 1}\n"
        "init:\n"
        "  scheme: kaiming_normal\n"
        f"  pretrained: ../runs/{run.name}/checkpoints/last.pt\n"
    )
    second = skier_cli("train", str(config), "-q", "--out", "second")
    assert second.returncode == 0, second.stderr
    init = json.loads((_only_run(tmp_path / "second") / "result.json").read_text())["init"]
    assert init["pretrained"] == str((run / "checkpoints" / "last.pt").resolve())
    assert init["loaded"] == ["blocks.0.linear.weight", "blocks.0.linear.bias"]
    # The head is skipped whole: its bias has the same shape, but it belongs to other weights.
    assert init["skipped_shape_mismatch"] == {
        "head.weight": {"model": [10, 16], "checkpoint": [10, 32]},
        "head.bias": {"model": [10], "checkpoint": [10]},
    }
    assert init["not_in_checkpoint"] == ["blocks.1.linear.weight", "blocks.1.linear.bias"]
    assert init["unused_checkpoint_keys"] == []
    assert init["weights"] == ["blocks.1.linear.weight", "head.weight"]
    assert init["biases"] == ["blocks.1.linear.bias", "head.bias"]


def test_misspelt_scheme_exits_2_with_did_you_mean(skier_cli: Runner, tmp_path: Path) -> None:
    proc = skier_cli("train", "--set", "init.scheme=xavier_unifrom", "--out", "runs")
    _assert_clean_error(proc, "init.scheme must be one of default, uniform, normal")
    assert "Did you mean 'xavier_uniform'?" in proc.stderr
    assert not (tmp_path / "runs").exists(), "a rejected config must not create a run"


def test_missing_pretrained_file_exits_2_before_anything_is_written(
    skier_cli: Runner, tmp_path: Path
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("init: {pretrained: nope.pt}\n")
    proc = skier_cli("train", str(config), "--out", "runs")
    _assert_clean_error(
        proc,
        "init.pretrained must be an existing checkpoint or state-dict file; got 'nope.pt'. "
        f"No file at {str(tmp_path / 'nope.pt')!r}",
    )
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
