"""`skier train CONFIG --seeds 0,1`: one group of runs, its report, `skier compare` on groups,
and a bad --seeds value as one line with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from skier.record import RunStore, default_store_url

Runner = Any
SETTINGS = [
    "--set", "data.name=synthetic", "--set", "data.samples=200", "--set",
    "model.hidden_sizes=[8]", "--set", "train.epochs=2", "--set", "optim.name=sgd",
]  # fmt: skip


@pytest.mark.slow
def test_train_seeds_makes_a_group_and_compare_takes_groups(
    skier_cli: Runner, tmp_path: Path
) -> None:
    proc = skier_cli("train", "--seeds", "0,1", *SETTINGS, "--out", "runs", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "seed 0: completed, 2 epochs" in proc.stdout and "seed 1: completed" in proc.stdout
    assert "done: status completed, 2 seeds, val_loss " in proc.stdout and " ± " in proc.stdout
    with RunStore(default_store_url(tmp_path / "runs")) as store:
        (group,) = store.list_runs(kind="seeds")
        children = store.list_runs(parent_id=group.id)
    assert group.name == "synthetic-mlp-sgd-seeds" and group.status == "completed"
    assert sorted(c.config["train"]["seed"] for c in children) == [0, 1]
    assert {c.kind for c in children} == {"seed"}
    run_dir = tmp_path / "runs" / group.id
    result = json.loads((run_dir / "result.json").read_text())
    assert result["kind"] == "seeds" and result["seeds"] == [0, 1]
    page = (run_dir / "report.html").read_text()
    assert "<h2>Runs over seeds</h2>" in page and "Every metric as mean ± std" in page

    other = skier_cli("train", "--seeds", "3,4", *SETTINGS, "--set", "optim.lr=0.3",
                      "--out", "runs", "-q")  # fmt: skip
    assert other.returncode == 0, other.stderr
    with RunStore(default_store_url(tmp_path / "runs")) as store:
        ids = [g.id for g in store.list_runs(kind="seeds")]
    compare = skier_cli("compare", *ids, "--dir", "runs", "--metric", "val_loss",
                        "--out", "groups.png")  # fmt: skip
    assert compare.returncode == 0, compare.stderr
    assert compare.stdout.count(" ± ") >= 2 and "curves drawn as bands" in compare.stdout
    assert "optim.lr" in compare.stdout and (tmp_path / "groups.png").is_file()


@pytest.mark.parametrize(
    ("value", "message"),
    [("0,x", "--seeds must be integers separated by commas, e.g. 0,1,2; got '0,x'."),
     ("", "--seeds must be integers separated by commas, e.g. 0,1,2; got ''."),
     ("2,2", "--seeds must name each seed once; got '2,2' (2 twice).")],
)  # fmt: skip
def test_a_bad_seeds_value_is_one_line_and_exit_status_2(
    skier_cli: Runner, tmp_path: Path, value: str, message: str
) -> None:
    proc = skier_cli("train", "--seeds", value, "--out", "runs")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_seeds_with_resume_or_nproc_is_refused(skier_cli: Runner, tmp_path: Path) -> None:
    proc = skier_cli("train", "--seeds", "0,1", "--nproc", "2", "--out", "runs")
    assert proc.returncode == 2 and "--nproc must be left out with --seeds; got 2." in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_cv_and_tune_take_seeds_and_refuse_a_bad_value(skier_cli: Runner, tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("optim.lr: {type: float, low: 0.01, high: 0.1}\n")
    for verb in (["cv"], ["tune", "--space", str(space)]):
        proc = skier_cli(*verb, "--seeds", "1,1", "--out", "runs")
        assert proc.returncode == 2, proc.stderr
        assert "--seeds must name each seed once; got '1,1' (1 twice)." in proc.stderr
        assert "Traceback" not in proc.stderr and not (tmp_path / "runs").exists()
