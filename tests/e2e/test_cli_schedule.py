"""`skier schedule plot`: the lr of a whole run drawn before training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

Runner = Any
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_plot_writes_a_png_in_the_working_folder(skier_cli: Runner, tmp_path: Path) -> None:
    proc = skier_cli(
        "schedule", "plot", "--set", "schedule.name=one_cycle", "--set", "train.epochs=4",
        "--steps-per-epoch", "10",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    png = tmp_path / "schedule.png"
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    assert f"plot: {png}" in proc.stdout
    assert "one_cycle (per step): lr " in proc.stdout and "over 40 steps" in proc.stdout
    assert proc.stderr == ""


def test_plot_counts_steps_from_the_data(skier_cli: Runner, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        "data: {name: digits, val_fraction: 0.2, test_fraction: 0.2}\n"
        "schedule: {name: cosine_restarts, restart_epochs: 2, warmup_epochs: 1}\n"
        "train: {epochs: 6, batch_size: 100}\n"
    )
    proc = skier_cli("schedule", "plot", str(config), "--out", "plots/lr.png", "--log")
    assert proc.returncode == 0, proc.stderr
    # digits: 1797 examples, 60% for training = 1077 -> 11 batches of up to 100
    assert "over 66 steps (6 epochs x 11 steps)" in proc.stdout
    assert (tmp_path / "plots" / "lr.png").read_bytes().startswith(PNG_SIGNATURE)
    # Gradient accumulation: a step is batch_size x accumulate examples (4 steps of up to 300).
    config.write_text(
        config.read_text().replace("batch_size: 100", "batch_size: 100, accumulate: 3")
    )
    proc = skier_cli("schedule", "plot", str(config), "--out", "plots/lr.png")
    assert proc.returncode == 0, proc.stderr
    assert "over 24 steps (6 epochs x 4 steps)" in proc.stdout


@pytest.mark.parametrize(
    "example",
    sorted(p.name for p in EXAMPLES.glob("digits_*schedule*.yaml")),
)
def test_examples_plot(skier_cli: Runner, tmp_path: Path, example: str) -> None:
    proc = skier_cli("schedule", "plot", str(EXAMPLES / example), "--steps-per-epoch", "5")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "schedule.png").read_bytes().startswith(PNG_SIGNATURE)


def test_plateau_says_it_is_drawn_flat(skier_cli: Runner) -> None:
    proc = skier_cli("schedule", "plot", "--set", "schedule.name=plateau", "--steps-per-epoch", "2")
    assert proc.returncode == 0, proc.stderr
    assert "note: reduce-on-plateau" in proc.stdout and "drawn flat" in proc.stdout


def test_wrong_schedule_name_exits_2_with_did_you_mean(skier_cli: Runner, tmp_path: Path) -> None:
    proc = skier_cli("schedule", "plot", "--set", "schedule.name=cosin", "--steps-per-epoch", "3")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("skier: error: schedule.name must be one of")
    assert "Did you mean 'cosine'?" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "schedule.png").exists()


def test_every_problem_at_once(skier_cli: Runner, tmp_path: Path) -> None:
    proc = skier_cli(
        "schedule", "plot", "--set", "schedule.name=cyclical", "--set", "schedule.cycle_mode=tri",
        "--steps-per-epoch", "3",
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "2 problems:" in proc.stderr and "max_lr" in proc.stderr and "cycle_mode" in proc.stderr
