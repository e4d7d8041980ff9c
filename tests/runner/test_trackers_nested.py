"""Group runs (cv, tune, seeds) with ``record.loggers: [mlflow]``: the group is one MLflow run
and each member (fold, trial, seed) an MLflow run nested under it (``mlflow.parentRunId``),
read back with MLflow's own MlflowClient."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from skier.config import RunConfig, load_config
from skier.config.search import CrossValidationConfig, TuneConfig, parse_space
from skier.record import RunFiles
from skier.runner import run_cv, run_seeds

pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

PARENT = "mlflow.parentRunId"


def _config(**extra: object) -> RunConfig:
    overrides = {
        "data.name": "synthetic", "data.samples": 160, "data.features": 6, "data.classes": 3,
        "model.hidden_sizes": [8], "train.epochs": 2, "train.batch_size": 32,
        "optim.name": "sgd", "optim.lr": 0.1, "record.loggers": "[mlflow]",
        "record.report": False, "record.plots": False, **extra,
    }  # fmt: skip
    return load_config(None, [f"{k}={v}" for k, v in overrides.items()])


def _runs(root: Path) -> list[Any]:
    client = MlflowClient(tracking_uri=f"sqlite:///{root / RunFiles.MLFLOW_DB}")
    experiment = client.get_experiment_by_name("skier")
    assert experiment is not None
    return list(client.search_runs([experiment.experiment_id]))


def _split(runs: list[Any], kind: str) -> tuple[Any, list[Any]]:
    (parent,) = [r for r in runs if r.data.tags.get("skier.kind") == kind]
    children = [r for r in runs if r.data.tags.get(PARENT) == parent.info.run_id]
    return parent, children


def test_cv_folds_are_nested_mlflow_runs_under_the_cv_run(tmp_path: Path) -> None:
    cv = CrossValidationConfig(folds=2, workers=1, refit=False)
    out = run_cv(_config(), cv=cv, out_dir=tmp_path, plots=False, progress=False)
    runs = _runs(tmp_path)
    assert len(runs) == 3  # the cv run and its 2 folds, nothing else
    parent, children = _split(runs, "cv")
    assert parent.data.tags["skier.run_id"] == out.run_id and PARENT not in parent.data.tags
    assert parent.info.status == "FINISHED" and parent.data.tags["skier.status"] == "completed"
    assert sorted(c.data.tags["skier.kind"] for c in children) == ["cv_fold", "cv_fold"]
    assert {c.data.tags["skier.run_id"] for c in children} == {f.run_id for f in out.folds}
    assert all(c.info.status == "FINISHED" for c in children)
    # the cv run holds the folds' mean of each metric: skier's own summary
    for key, value in out.summary["mean"].items():
        assert parent.data.metrics[f"mean_{key}"] == pytest.approx(value)
    names = {a.path for a in MlflowClient(f"sqlite:///{tmp_path / RunFiles.MLFLOW_DB}")
             .list_artifacts(parent.info.run_id)}  # fmt: skip
    assert {RunFiles.CONFIG, RunFiles.RESULT} <= names
    fold_files = {a.path for a in MlflowClient(f"sqlite:///{tmp_path / RunFiles.MLFLOW_DB}")
                  .list_artifacts(children[0].info.run_id)}  # fmt: skip
    assert RunFiles.RESULT in fold_files and "checkpoints" not in fold_files  # off by default


@pytest.mark.parametrize("workers", [1, 2])  # 2: the trials run in spawned processes
def test_tune_trials_are_nested_mlflow_runs_under_the_tune_run(
    tmp_path: Path, workers: int
) -> None:
    from skier.runner.tune import run_tune

    space = parse_space({"optim.lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True}})
    tune = TuneConfig(method="random", trials=2, workers=workers, prune="none")
    out = run_tune(_config(**{"checkpoint.enabled": False}), space, tune=tune, out_dir=tmp_path)
    runs = _runs(tmp_path)
    parent, children = _split(runs, "tune")
    assert len(runs) == 3 and len(children) == 2
    assert sorted(c.data.tags["skier.run_id"] for c in children) == sorted(
        t["run_id"] for t in out.summary["trials"]
    )
    assert all(c.data.tags["skier.kind"] == "trial" for c in children)
    best = out.summary["best"]["value"]
    assert parent.data.metrics[f"best_{out.summary['metric']}"] == pytest.approx(best)
    assert parent.data.metrics["trials"] == 2 and parent.info.status == "FINISHED"


def test_seed_runs_are_nested_mlflow_runs_under_the_group(tmp_path: Path) -> None:
    out = run_seeds(_config(), [0, 1], out_dir=tmp_path, progress=False, plots=False)
    runs = _runs(tmp_path)
    parent, children = _split(runs, "seeds")
    assert len(runs) == 3 and len(children) == 2
    assert {c.data.tags["skier.run_id"] for c in children} == {o.run_id for o in out.runs}
    last = out.bands.mean_rows()[-1]
    assert parent.data.metrics["mean_val_loss"] == pytest.approx(last["val_loss"])


def test_a_resumed_study_goes_on_in_its_mlflow_run(tmp_path: Path) -> None:
    """The same study (storage and name) run again: its trials nest under the first tune's
    MLflow run, not under a new one."""
    from skier.runner.tune import run_tune

    space = parse_space({"optim.lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True}})
    config = _config(**{"checkpoint.enabled": False})
    journal = tmp_path / "study.journal"
    tune = TuneConfig(method="random", trials=2, workers=1, prune="none",
                      storage=str(journal), study="lr-study")  # fmt: skip
    first = run_tune(config, space, tune=tune, out_dir=tmp_path)
    second = run_tune(config, space, tune=tune, out_dir=tmp_path)
    assert first.run_id != second.run_id  # two skier tune runs of one study
    runs = _runs(tmp_path)
    parent, children = _split(runs, "tune")  # exactly one tune run in MLflow
    assert len(runs) == 5 and len(children) == 4
    trial_ids = [t["run_id"] for out in (first, second) for t in out.summary["trials"]]
    assert sorted(c.data.tags["skier.run_id"] for c in children) == sorted(set(trial_ids))
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials"] == 4
    other = TuneConfig(method="random", trials=1, workers=1, prune="none",
                       storage=str(journal), study="another-study")  # fmt: skip
    run_tune(config, space, tune=other, out_dir=tmp_path)
    assert len([r for r in _runs(tmp_path) if r.data.tags.get("skier.kind") == "tune"]) == 2
