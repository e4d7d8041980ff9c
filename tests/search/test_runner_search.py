"""``run_cv`` and ``run_tune``: recorded runs, store links, figures, pruning, workers."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from skier.config import RunConfig, config_from_mapping, load_config
from skier.config.search import CrossValidationConfig, TuneConfig, parse_space
from skier.record import RunStore, default_store_url
from skier.runner.cv import run_cv
from skier.runner.tune import run_tune
from skier.search.recovery import WORKER_ATTR
from skier.search.tune import close_storage, open_storage

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _config(**extra: object) -> RunConfig:
    """A tiny classification run: a few hundred rows, a few epochs, no checkpoints."""
    overrides = {
        "data.name": "synthetic", "data.samples": 240, "data.features": 6, "data.classes": 3,
        "model.hidden_sizes": [8], "train.epochs": 3, "train.batch_size": 32,
        "checkpoint.enabled": False, "record.report": False, "record.plots": False,
        **extra,
    }  # fmt: skip
    return load_config(None, [f"{k}={v}" for k, v in overrides.items()])


def test_cv_records_every_fold_under_the_cv_run_with_mean_std_and_refit(tmp_path: Path) -> None:
    config = _config(**{"record.plots": True, "record.report": True,
                        "early_stopping.enabled": True, "early_stopping.patience": 1})  # fmt: skip
    lines: list[str] = []
    out = run_cv(
        config, cv=CrossValidationConfig(folds=3, workers=1, refit=True), out_dir=tmp_path,
        echo=lines.append,
    )  # fmt: skip
    s = out.summary
    assert out.status == "completed" and len(out.folds) == 3
    assert [f["fold"] for f in s["folds"]] == [1, 2, 3]
    assert set(s["mean"]) >= {"val_loss", "val_accuracy"}
    values = [f.metrics["val_loss"] for f in out.folds]
    assert s["value"] == pytest.approx(sum(values) / 3)
    assert s["chosen_epochs"] == [f.best_epoch for f in out.folds]
    assert 1 <= s["median_epoch"] <= 3
    assert sum(line.startswith("fold ") for line in lines) == 3
    for name in ("config.yaml", "folds.csv", "result.json", "cv_curves.png", "report.html"):
        assert (out.run_dir / name).is_file(), name
    with RunStore(default_store_url(tmp_path)) as store:
        cv_row = store.get_run(out.run_id)
        assert cv_row.kind == "cv" and cv_row.status == "completed"
        assert cv_row.summary["median_epoch"] == s["median_epoch"]
        folds = store.list_runs(kind="cv_fold", parent_id=out.run_id)
        assert sorted(r.id for r in folds) == sorted(f.run_id for f in out.folds)
        assert {r.summary["fold"] for r in folds} == {1, 2, 3}
        (refit,) = store.list_runs(kind="train", parent_id=out.run_id)
        assert refit.epochs_done == s["median_epoch"] and refit.test_metrics
    assert out.refit is not None and out.refit["epochs"] == s["median_epoch"]


def test_tune_records_trials_as_runs_and_pruned_ones_as_pruned(tmp_path: Path) -> None:
    # lr 1e-6 barely moves: once a 0.05 trial has run, the median rule prunes it.
    space = parse_space(
        {"optim.lr": {"type": "categorical", "choices": [0.05, 1.0e-6]}}, base=_config()
    )
    tune = TuneConfig(method="random", trials=6, workers=1, prune="median", prune_startup=1)
    out = run_tune(_config(**{"train.epochs": 4}), space, tune=tune, out_dir=tmp_path)
    s = out.summary
    assert s["counts"].get("pruned", 0) >= 1 and s["best"]["params"]["optim.lr"] == 0.05
    study = optuna.load_study(
        study_name=out.study_name, storage=open_storage(str(out.run_dir / "study.journal"))
    )
    with RunStore(default_store_url(tmp_path)) as store:
        trials = store.list_runs(kind="trial", parent_id=out.run_id)
        assert len(trials) == 6
        by_id = {r.id: r for r in trials}
        for t in study.get_trials():
            run = by_id[t.user_attrs["skier:run_id"]]
            assert run.summary["trial"] == t.number
            if t.state == TrialState.PRUNED:
                assert run.status == "stopped" and run.stop_reason.startswith("pruned")
                assert run.summary["pruned"] is True and run.summary["state"] == "pruned"
            else:
                assert t.state == TrialState.COMPLETE and run.summary["pruned"] is False
        assert store.get_run(out.run_id).summary["best"]["number"] == s["best"]["number"]
    # the best config is a complete config that `skier train` accepts
    best = config_from_mapping(yaml.safe_load((out.run_dir / "best_config.yaml").read_text()))
    assert best.optim.lr == 0.05 and best.model.hidden_sizes == [8]
    assert (out.run_dir / "trials.csv").read_text().count("\n") == 7


def test_cv_mean_objective_runs_a_cv_per_trial(tmp_path: Path) -> None:
    space = parse_space({"optim.lr": {"type": "float", "low": 0.01, "high": 0.05, "log": True}})
    tune = TuneConfig(method="random", trials=2, workers=1, objective="cv_mean", folds=2,
                      prune="none")  # fmt: skip
    out = run_tune(_config(**{"train.epochs": 2}), space, tune=tune, out_dir=tmp_path)
    with RunStore(default_store_url(tmp_path)) as store:
        cvs = store.list_runs(kind="cv", parent_id=out.run_id)
        assert len(cvs) == 2
        for cv in cvs:
            assert len(store.list_runs(kind="cv_fold", parent_id=cv.id)) == 2
    values = sorted(t["value"] for t in out.summary["trials"])
    assert values == sorted(cv.summary["value"] for cv in cvs)


def _kill_first_running_worker(journal: Path, done: threading.Event, killed: list[str]) -> None:
    """Wait for a trial to be mid-training in a worker process (it has reported an epoch, and
    fewer than half of its 30), then SIGKILL that process. Killed later, the trial's run could
    already be completed in the store while the study still holds it running."""
    while not done.is_set() and not killed:
        time.sleep(0.05)
        if not journal.exists():
            continue
        try:
            storage = open_storage(str(journal))
            (summary,) = optuna.get_all_study_summaries(storage)
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
        except (ValueError, KeyError):
            continue
        for t in study.get_trials(states=(TrialState.RUNNING,)):
            worker = t.user_attrs.get(WORKER_ATTR, "")
            pid = int(worker.rsplit(":", 1)[1]) if ":" in worker else 0
            if pid and pid != os.getpid() and 1 <= len(t.intermediate_values) < 15:
                os.kill(pid, signal.SIGKILL)
                killed.append(worker)
                return


@pytest.mark.slow
def test_grid_with_two_workers_covers_the_grid_exactly_once_even_when_one_is_killed(
    tmp_path: Path,
) -> None:
    """Two spawned workers share a journal file; one is killed mid-trial. Its trial is failed
    and re-queued at once, a new worker takes its remaining trials, and every grid point is
    still evaluated exactly once."""
    space = parse_space(
        {
            "optim.lr": {"type": "float", "low": 0.01, "high": 0.03, "step": 0.01},
            "train.batch_size": {"type": "categorical", "choices": [16, 32]},
        }
    )
    config = _config(**{"data.samples": 1500, "model.hidden_sizes": [64], "train.epochs": 30})
    journal = tmp_path / "study.journal"
    tune = TuneConfig(method="grid", workers=2, storage=str(journal))
    done, killed, result = threading.Event(), [], {}

    def search() -> None:
        try:
            result["outcome"] = run_tune(config, space, tune=tune, out_dir=tmp_path)
        finally:
            done.set()

    thread = threading.Thread(target=search)
    thread.start()
    _kill_first_running_worker(journal, done, killed)
    thread.join(timeout=400)
    assert not thread.is_alive()
    out = result["outcome"]
    s = out.summary
    assert killed, "no worker was running a trial to kill"
    points = [
        (t["params"]["optim.lr"], t["params"]["train.batch_size"])
        for t in s["trials"]
        if t["state"] == "complete"
    ]
    grid = {(lr, b) for lr in (0.01, 0.02, 0.03) for b in (16, 32)}
    assert sorted(points) == sorted(grid)  # every point, each exactly once
    failed = [t for t in s["trials"] if t["state"] == "fail"]
    assert any("died" in (t["note"] or "") for t in failed)
    retried = [t for t in s["trials"] if t["retry_of"] is not None]
    assert retried and all(t["state"] == "complete" for t in retried)
    assert any(f"pid {killed[0].rsplit(':', 1)[1]}" in note for note in s["notes"])
    with RunStore(default_store_url(tmp_path)) as store:
        runs = store.list_runs(kind="trial", parent_id=out.run_id)
        assert not [r for r in runs if r.status == "running"]  # the killed one is marked failed
        assert sum(r.status == "completed" for r in runs) == 6


def _postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(not _postgres_reachable(), reason="PostgreSQL on 127.0.0.1:5432 unreachable")
def test_two_workers_times_ten_trials_on_postgresql_record_twenty(tmp_path: Path) -> None:
    study_name = f"skier-test-{uuid.uuid4().hex[:12]}"
    space = parse_space({"optim.lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}})
    tune = TuneConfig(method="random", trials=20, workers=2, storage=PG_URL.replace(
        "+psycopg", ""), study=study_name, prune="none")  # fmt: skip
    storage = optuna.storages.RDBStorage(PG_URL)
    try:
        out = run_tune(_config(**{"train.epochs": 1}), space, tune=tune, out_dir=tmp_path)
        study = optuna.load_study(study_name=study_name, storage=storage)
        trials = study.get_trials()
        assert len(trials) == 20
        assert sorted(t.number for t in trials) == list(range(20))
        assert all(t.state == TrialState.COMPLETE for t in trials)
        run_ids = [t.user_attrs["skier:run_id"] for t in trials]
        assert len(set(run_ids)) == 20
        workers = {t.user_attrs[WORKER_ATTR] for t in trials}
        assert len(workers) == 2  # both processes ran trials
        with RunStore(default_store_url(tmp_path)) as store:
            runs = store.list_runs(kind="trial", parent_id=out.run_id)
            assert sorted(r.id for r in runs) == sorted(run_ids)
        assert all(math.isfinite(t.value) for t in trials)
    finally:
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=study_name, storage=storage)
        storage.engine.dispose()


def _redis_reachable() -> bool:
    try:
        import redis

        client = redis.Redis.from_url("redis://127.0.0.1:6379", socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@pytest.mark.parametrize(
    "storage",
    [
        "sqlite",
        pytest.param(
            "redis://127.0.0.1:6379",
            marks=pytest.mark.skipif(
                not _redis_reachable(), reason="Redis on 127.0.0.1:6379 unreachable"
            ),
        ),
    ],
)
def test_a_study_is_resumed_by_name(storage: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna' / 'study.db'}" if storage == "sqlite" else storage
    name = f"skier-test-{uuid.uuid4().hex[:12]}"
    space = parse_space({"optim.lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}})
    config = _config(**{"train.epochs": 1})
    runs = [
        run_tune(
            config, space, out_dir=tmp_path,
            tune=TuneConfig(method="random", trials=n, workers=1, storage=url, study=name),
        )
        for n in (2, 1)
    ]  # fmt: skip
    first, again = runs
    assert first.summary["counts"] == {"complete": 2}
    assert again.summary["counts"] == {"complete": 3}  # the study goes on where it was
    assert again.study_name == first.study_name == name
    storage_object = open_storage(url)
    try:
        optuna.delete_study(study_name=name, storage=storage_object)
    finally:
        close_storage(storage_object)
