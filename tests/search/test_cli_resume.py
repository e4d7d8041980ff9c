"""``skier tune --resume RUN_DIR`` goes on with the same study (in-process CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from skier.cli.main import cli
from skier.errors import ConfigError

CONFIG = """\
data: {name: synthetic, samples: 200, features: 4, classes: 3}
model: {name: mlp, hidden_sizes: [8]}
train: {epochs: 1, batch_size: 32}
checkpoint: {enabled: false}
record: {plots: false, report: false}
"""


def test_resume_runs_more_trials_of_the_same_study(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text(CONFIG)
    (tmp_path / "space.yaml").write_text("optim.lr: {type: float, low: 0.001, high: 0.1}\n")
    runner = CliRunner()
    args = ["tune", str(tmp_path / "run.yaml"), "--space", str(tmp_path / "space.yaml"),
            "--method", "random", "--trials", "2", "--workers", "1", "--out", str(tmp_path),
            "-q"]  # fmt: skip
    first = runner.invoke(cli, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert "done: 2 trials in the study (2 complete)" in first.output
    run_dir = Path(first.output.split("run directory: ")[1].splitlines()[0])
    again = runner.invoke(
        cli,
        ["tune", "--resume", str(run_dir), "--trials", "1", "--workers", "1", "--out",
         str(tmp_path), "-q"],
        catch_exceptions=False,
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "done: 3 trials in the study (3 complete)" in again.output
    second = Path(again.output.split("run directory: ")[1].splitlines()[0])
    saved = json.loads((second / "study.json").read_text())
    assert saved["tune"]["method"] == "random"  # from the first run, not the default (bayes)
    assert saved["study"] == json.loads((run_dir / "study.json").read_text())["study"]
    with pytest.raises(ConfigError, match=r"has no study\.json"):
        runner.invoke(cli, ["tune", "--resume", str(tmp_path)], catch_exceptions=False)
