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


# One of each stage `skier train` checks before it reads any data, in the order it reports
# them: the config's own settings, the optimizer's, the data files, the monitored keys.
EVERY_STAGE = """\
model: {hidden_sise: [8]}
optim: {name: adamm}
data: {name: csv, path: missing.csv, target: y}
early_stopping: {enabled: true, monitor: val_los}
"""


def test_config_data_and_monitor_problems_come_in_one_error(
    skier_cli: Runner, tmp_path: Path
) -> None:
    cfg = _write(tmp_path / "run.yaml", EVERY_STAGE)
    proc = skier_cli("train", str(cfg), "--out", "runs")
    fragments = [
        "4 problems:",
        "run.yaml: model.hidden_sise is not a known setting. Did you mean 'hidden_sizes'?",
        "optim.name must be a known optimizer; got 'adamm'. Did you mean 'adam'?",
        f"data.path must be an existing CSV file; got {str(tmp_path / 'missing.csv')!r}.",
        "EarlyStopping.monitor must be a key the loop produces; got 'val_los'. Did you mean "
        "'val_loss'?",
    ]
    _assert_clean_error(proc, *fragments)
    at = [proc.stderr.index(f) for f in fragments]
    assert at == sorted(at), proc.stderr
    assert not (tmp_path / "runs").exists(), "a rejected config must not create a run"


def test_run_training_reports_missing_files_and_bad_monitors_together(tmp_path: Path) -> None:
    """The same collection for a valid config given in Python, before anything is read."""
    from skier.config import config_from_mapping
    from skier.errors import ConfigError
    from skier.runner import run_training

    config = config_from_mapping(
        {
            "data": {"name": "npz", "path": str(tmp_path / "gone.npz"), "task": "regression"},
            "schedule": {"name": "plateau", "monitor": "val_accuracy"},  # no accuracy then
            "early_stopping": {"enabled": True, "monitor": "val_los"},
            "regularization": {"l2": 0.0},
            "checkpoint": {"monitor": "penalty"},  # only logged with an l1 or l2 penalty
        }
    )
    with pytest.raises(ConfigError, match=r"^4 problems:") as info:
        run_training(config, out_dir=tmp_path / "runs", progress=False)
    problems = info.value.problems
    assert problems[0].startswith("data.path must be an existing .npz file; got ")
    assert problems[1].startswith("EarlyStopping.monitor must be a key the loop produces")
    assert problems[2].startswith("Checkpoint.monitor must be a key the loop produces; got 'pen")
    assert problems[3].startswith("schedule.monitor must be a key the loop produces; got 'val_a")
    assert "\n" not in "".join(problems)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("yaml_text", "reported", "not_yet"),
    [
        # A section with a mistake of its own is not checked further: its monitor waits.
        (
            "data: {name: csv, path: missing.csv, target: y}\n"
            "early_stopping: {enabled: true, monitor: val_los, patiense: 3}\n",
            ["2 problems:", "early_stopping.patiense is not a known setting", "missing.csv"],
            "EarlyStopping.monitor",
        ),
        # A file's contents are read only once everything checked before is clean.
        (
            "data: {name: csv, path: d.csv, target: lable}\noptim: {lrr: 0.1}\n",
            ["optim.lrr is not a known setting. Did you mean 'lr'?"],
            "'lable'",
        ),
    ],
)
def test_where_reporting_everything_at_once_stops(
    skier_cli: Runner, tmp_path: Path, yaml_text: str, reported: list[str], not_yet: str
) -> None:
    """docs/reliability.md, "Every problem at once": the two stops it names."""
    _write(tmp_path / "d.csv", "a,label\n1,x\n2,y\n")
    proc = skier_cli("train", str(_write(tmp_path / "run.yaml", yaml_text)), "--out", "runs")
    _assert_clean_error(proc, *reported)
    assert not_yet not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_a_monitor_only_the_data_rules_out_is_refused_once_it_is_read(
    skier_cli: Runner, tmp_path: Path
) -> None:
    """A csv's task (data.task: auto) is known once it is read: the exact keys are checked
    then, still before anything is written."""
    rows = "\n".join(f"{i},{i * 0.5}" for i in range(30))
    _write(tmp_path / "d.csv", "a,price\n" + rows + "\n")
    cfg = _write(
        tmp_path / "run.yaml",
        "data: {name: csv, path: d.csv, target: price}\n"
        "early_stopping: {enabled: true, monitor: val_accuracy}\n",
    )
    proc = skier_cli("train", str(cfg), "--out", "runs")
    _assert_clean_error(
        proc,
        "EarlyStopping.monitor must be a key the loop produces; got 'val_accuracy'. Valid keys: "
        "epoch, epoch_time, loss, lr, val_loss.",
    )
    assert not (tmp_path / "runs").exists()


USER_DATA = """
import torch
from torch.utils.data import TensorDataset

def make():
    return TensorDataset(torch.randn(40, 4), torch.randint(0, 2, (40,)))

def broken(root):
    raise FileNotFoundError(f"no folder {root!r}")
"""


@pytest.mark.parametrize(
    ("data", "more", "fragment"),
    [
        ("dataset: gone_module:make", "",
         "data.dataset must be a 'package.module:function' reference to an importable module; "
         "got 'gone_module:make'. No module named 'gone_module'"),
        ("dataset: user_data:mak", "", "has no attribute 'mak'. Did you mean 'make'?"),
        ("dataset: user_data:broken\n  dataset_kwargs: {root: gone}", "",
         "data.dataset 'user_data:broken': calling it with data.dataset_kwargs {'root': 'gone'} "
         "raised FileNotFoundError: no folder 'gone'"),
        ("dataset: user_data:make", "optim:\n  lr: auto\n",
         "optim.lr must be a number with data.name 'dataset'; got 'auto'."),
    ],
)  # fmt: skip
def test_bad_user_dataset(
    skier_cli: Runner, tmp_path: Path, data: str, more: str, fragment: str
) -> None:
    _write(tmp_path / "user_data.py", USER_DATA)
    cfg = _write(tmp_path / "run.yaml", f"data:\n  name: dataset\n  {data}\n{more}")
    proc = skier_cli("train", str(cfg), "--out", "runs")
    _assert_clean_error(proc, fragment)
    assert not (tmp_path / "runs").exists(), "a rejected config must not create a run"
