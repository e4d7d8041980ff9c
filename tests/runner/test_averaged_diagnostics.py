"""Diagnostics on a finished run that kept a weight average look at the weights the run
selected (train.average_select), or at the copy asked for (``average=`` / ``--average``,
``--raw``); SWA's batch-norm statistics are recomputed as the loop recomputes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from skier.cli.main import cli
from skier.config import load_config
from skier.diagnostics.sharpness import sharpness
from skier.errors import CheckpointError, ConfigError
from skier.record import RunDir
from skier.runner import run_training
from skier.runner._sources import _load_weights
from skier.runner.diagnose import load_source, run_sharpness
from skier.train import Checkpoint
from skier.train.checkpoint import load_checkpoint, save_checkpoint

BASE = [
    "data.name=digits", "model.hidden_sizes=[16]", "train.epochs=4", "train.batch_size=64",
    "optim.name=sgd", "optim.lr=0.1", "optim.momentum=0.9", "record.report=False",
]  # fmt: skip


def _run(tmp_path: Path, *settings: str) -> tuple[Path, dict[str, torch.Tensor]]:
    """A run directory and the weights the run returned."""
    outcome = run_training(load_config(None, [*BASE, *settings]), out_dir=tmp_path,
                           progress=False)  # fmt: skip
    assert outcome.status == "completed"
    returned = {k: v.detach().clone() for k, v in outcome.result.model.state_dict().items()}
    return outcome.run_dir, returned


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def _last(run_dir: Path) -> dict[str, torch.Tensor]:
    return dict(load_checkpoint(RunDir(run_dir).checkpoints / Checkpoint.LAST_FILE)["model"])


def test_a_run_that_selected_its_swa_average_is_analysed_as_it_returned_it(
    tmp_path: Path,
) -> None:
    run_dir, returned = _run(
        tmp_path, "model.batch_norm=true", "train.swa_start=2", "train.swa_lr=0.05",
        "train.average_select=average",
    )  # fmt: skip
    raw = _last(run_dir)
    assert not _equal(raw, returned)  # the average is not the raw weights
    assert any("running_mean" in k for k in returned)
    source = load_source(run_dir)
    assert source.averaged == "swa"
    assert "SWA-averaged" in source.describe()
    assert _equal(source.model.state_dict(), returned)
    explicit_raw = load_source(run_dir, average=False)
    assert explicit_raw.averaged is None and _equal(explicit_raw.model.state_dict(), raw)
    # A checkpoint whose average's batch-norm statistics are stale (written before the loop
    # recomputed them): the source recomputes them as the loop does, over the training inputs.
    state = load_checkpoint(RunDir(run_dir).checkpoints / Checkpoint.LAST_FILE)
    averaged = state["average"]["averaged"]
    for key in [k for k in averaged if k.endswith("running_mean")]:
        averaged[key] = torch.full_like(averaged[key], 5.0)
    state["average"]["bn_stale"] = True
    path = tmp_path / "stale.pt"
    save_checkpoint(path, state)
    assert _load_weights(source.model, source.config, source.data, path, None) == "swa"
    assert _equal(source.model.state_dict(), returned)


def test_the_raw_weights_by_default_when_the_run_selected_them(tmp_path: Path) -> None:
    outcome = run_training(load_config(None, [*BASE, "train.ema=0.9"]), out_dir=tmp_path,
                           progress=False)  # fmt: skip
    averaged = outcome.result.averaged_model
    assert averaged is not None
    source = load_source(outcome.run_dir)
    assert source.averaged is None
    assert _equal(source.model.state_dict(), _last(outcome.run_dir))
    asked = load_source(outcome.run_dir, average=True)
    assert asked.averaged == "ema"
    assert _equal(asked.model.state_dict(), averaged.state_dict())
    # the diagnostic measures the model it was given, and records which copy it was
    found = run_sharpness(asked, {"trace": False, "subset": 200}, out_dir=tmp_path / "d")
    expected = sharpness(averaged, asked.data.train,
                         settings={"trace": False, "subset": 200}).eigenvalues[0]  # fmt: skip
    assert found.result.eigenvalues[0] == pytest.approx(expected, rel=1e-5)
    assert json.loads((found.run_dir / "result.json").read_text())["averaged"] == "ema"


def test_asking_for_an_average_a_run_did_not_keep_is_refused(tmp_path: Path) -> None:
    run_dir, _ = _run(tmp_path)
    with pytest.raises(CheckpointError, match="must hold a weight average for --average"):
        load_source(run_dir, average=True)
    with pytest.raises(ConfigError, match="average must be off"):
        load_source(run_dir, weights="init", average=True)


def test_an_swa_average_that_holds_nothing_yet_at_the_best_epoch(tmp_path: Path) -> None:
    run_dir, _ = _run(tmp_path, "train.swa_start=4", "train.average_select=average")
    # last.pt holds the average of epoch 4; a checkpoint before swa_start would hold none:
    # then the default is the raw weights (as the run judged them) and --average is refused.
    state = load_checkpoint(RunDir(run_dir).checkpoints / Checkpoint.LAST_FILE)
    assert state["average"]["updates"] == 1
    state["average"]["updates"] = 0
    source = load_source(run_dir)
    path = tmp_path / "early.pt"
    save_checkpoint(path, state)
    assert _load_weights(source.model, source.config, source.data, path, None) is None
    assert _equal(source.model.state_dict(), dict(state["model"]))
    with pytest.raises(CheckpointError, match="holds nothing yet"):
        _load_weights(source.model, source.config, source.data, path, True)


def test_the_cli_takes_average_or_raw(tmp_path: Path) -> None:
    run_dir, _ = _run(tmp_path, "train.ema=0.9")
    runner = CliRunner()
    for flag, expected in (("--average", "ema"), ("--raw", None)):
        out = tmp_path / flag.strip("-")
        found = runner.invoke(cli, ["sharpness", str(run_dir), "--no-trace", "--subset", "100",
                                    flag, "--out", str(out), "--quiet"])  # fmt: skip
        assert found.exit_code == 0, found.output
        (result,) = out.glob("*/result.json")
        assert json.loads(result.read_text())["averaged"] == expected
