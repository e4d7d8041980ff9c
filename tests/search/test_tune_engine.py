"""The Optuna wiring: samplers, pruners, storages, the pruning callback, stale-trial recovery."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from skier.config.search import parse_space
from skier.errors import ConfigError
from skier.search.recovery import (
    HEARTBEAT_ATTR,
    WORKER_ATTR,
    Heartbeat,
    fail_stale_trials,
    fail_worker_trials,
    journal_lock,
)
from skier.search.tune import (
    DuplicateGridPoint,
    PruningCallback,
    _rdb_url,
    check_grid_claim,
    close_storage,
    grid_points,
    make_pruner,
    make_sampler,
    objective_direction,
    open_storage,
    open_study,
    storage_kind,
    study_summary,
    suggest,
)

SPACE = parse_space(
    {
        "optim.lr": {"type": "float", "low": 0.01, "high": 0.03, "step": 0.01},
        "model.hidden_sizes": {"type": "categorical", "choices": [[8], [16, 8]]},
    }
)


def test_methods_map_to_optuna_samplers() -> None:
    assert isinstance(make_sampler("grid", SPACE), optuna.samplers.GridSampler)
    assert isinstance(make_sampler("random", SPACE), optuna.samplers.RandomSampler)
    assert isinstance(make_sampler("bayes", SPACE), optuna.samplers.TPESampler)
    assert isinstance(make_sampler("bayes", SPACE, sampler="gp"), optuna.samplers.GPSampler)
    assert isinstance(make_pruner("median", epochs=10), optuna.pruners.MedianPruner)
    assert isinstance(make_pruner("hyperband", epochs=10), optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner("none", epochs=10), optuna.pruners.NopPruner)
    assert isinstance(make_pruner("auto", epochs=10, method="grid"), optuna.pruners.NopPruner)
    assert objective_direction("val_accuracy") == "maximize"
    assert objective_direction("val_error") == "minimize"


def test_grid_points_and_a_continuous_float_is_a_clear_error() -> None:
    expected = {"optim.lr": [0.01, 0.02, 0.03], "model.hidden_sizes": ["[8]", "[16, 8]"]}
    assert grid_points(SPACE) == expected
    continuous = parse_space({"optim.lr": {"type": "float", "low": 0.01, "high": 0.1}}, "s.yaml")
    with pytest.raises(ConfigError, match=r"^s\.yaml: optim\.lr must have a step .* method grid"):
        make_sampler("grid", continuous)


def test_storage_urls() -> None:
    assert storage_kind("postgresql://postgres@127.0.0.1/test") == "rdb"
    assert storage_kind("postgresql+psycopg://postgres@127.0.0.1/test") == "rdb"
    assert storage_kind("redis://localhost:6379") == "redis"
    assert storage_kind("runs/x/study.journal") == "file"
    # SQLAlchemy reads plain postgresql:// as psycopg2; skier installs psycopg 3
    assert _rdb_url("postgresql://u@h/db").startswith(("postgresql+psycopg://", "postgresql://"))


def test_a_wrong_direction_for_an_existing_study_is_an_error(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "s.journal"))
    sampler, pruner = optuna.samplers.RandomSampler(0), optuna.pruners.NopPruner()
    open_study(storage, "s", direction="minimize", sampler=sampler, pruner=pruner)
    with pytest.raises(ConfigError, match="exists with direction 'minimize'; got 'maximize'"):
        open_study(storage, "s", direction="maximize", sampler=sampler, pruner=pruner)


class _ScriptedTrial:
    """A trial whose pruner says 'prune' from a given step on."""

    def __init__(self, prune_from: int) -> None:
        self.prune_from, self.reports, self.step = prune_from, [], 0

    def report(self, value: float, step: int) -> None:
        self.reports.append((step, value))
        self.step = step

    def should_prune(self) -> bool:
        return self.step >= self.prune_from


class _State:
    def __init__(self) -> None:
        self.epoch, self.reason = 0, None

    def request_stop(self, reason: str) -> None:
        self.reason = reason


def test_pruning_callback_reports_each_validation_epoch_and_requests_a_stop() -> None:
    trial, state = _ScriptedTrial(prune_from=3), _State()
    cb = PruningCallback(trial, "val_loss")  # type: ignore[arg-type]
    assert cb.monitored_keys() == ["val_loss"]
    for epoch, logs in enumerate([{"val_loss": 0.9}, {"loss": 0.5}, {"val_loss": 0.8}], 1):
        state.epoch = epoch
        cb.on_epoch_end(state, logs)  # type: ignore[arg-type]
    assert trial.reports == [(1, 0.9), (3, 0.8)]  # epoch 2 had no validation
    assert cb.pruned_at == 3 and state.reason is not None and state.reason.startswith("pruned")


def _running_trial(study: optuna.Study, worker: str, beat: float | None) -> optuna.Trial:
    trial = study.ask()
    suggest(trial, SPACE)
    trial.set_user_attr(WORKER_ATTR, worker)
    if beat is not None:
        trial.set_user_attr(HEARTBEAT_ATTR, beat)
    return trial


def test_a_silent_trial_is_failed_and_requeued_once(tmp_path: Path) -> None:
    path = str(tmp_path / "study.journal")
    study = optuna.create_study(storage=open_storage(path), study_name="s")
    stale = _running_trial(study, "host:1", beat=time.time() - 100)
    fresh = _running_trial(study, "host:2", beat=time.time())
    # a second process sees the same journal
    other = optuna.load_study(study_name="s", storage=open_storage(path))
    assert fail_stale_trials(other, grace_s=30) == [stale.number]
    assert fail_stale_trials(study, grace_s=30) == []  # already handled: no second retry
    trials = other.get_trials()
    assert trials[stale.number].state == TrialState.FAIL
    assert trials[fresh.number].state == TrialState.RUNNING
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert len(waiting) == 1 and waiting[0].params == trials[stale.number].params
    # the retry is what the next trial runs
    retry = other.ask()
    assert retry.params == trials[stale.number].params


def test_a_live_worker_on_this_host_is_not_failed_for_a_late_beat(tmp_path: Path) -> None:
    """A beat can be late while its worker lives (a slow storage, a long step); on this host
    the process table says so. A worker whose process is gone is failed after the grace."""
    study = optuna.create_study(storage=open_storage(str(tmp_path / "j")), study_name="s")
    here = socket.gethostname()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        late = _running_trial(study, f"{here}:{sleeper.pid}", beat=time.time() - 100)
        assert fail_stale_trials(study, grace_s=30) == []  # alive: left running
        sleeper.kill()
        sleeper.wait()
        assert fail_stale_trials(study, grace_s=30) == [late.number]  # gone: failed
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_worker_killed_holding_the_journal_lock_does_not_stall_the_others(
    tmp_path: Path,
) -> None:
    """Optuna's file locks outlive a killed holder (the others wait 30 s, then force it); the
    kernel's flock does not."""
    path = str(tmp_path / "study.journal")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from skier.search.recovery import journal_lock\n"
         f"lock = journal_lock({path!r}); lock.acquire()\n"
         "print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        holder.kill()
        holder.wait()
        lock = journal_lock(path)
        start = time.monotonic()
        assert lock.acquire()
        lock.release()
        assert time.monotonic() - start < 5  # at once, not after a grace period
        storage = open_storage(path)  # and the storage writes through it
        study = optuna.create_study(storage=storage, study_name="after")
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
        assert len(study.get_trials()) == 2
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_the_heartbeat_thread_stamps_a_running_trial(tmp_path: Path) -> None:
    study = optuna.create_study(storage=open_storage(str(tmp_path / "j")), study_name="s")
    trial = study.ask()
    with Heartbeat(study, trial, 0.05):
        first = study.get_trials()[0].user_attrs[HEARTBEAT_ATTR]
        time.sleep(0.3)
        later = study.get_trials()[0].user_attrs[HEARTBEAT_ATTR]
    assert later > first  # it kept beating while the trial ran
    study.tell(trial, 1.0)
    assert fail_stale_trials(study, grace_s=0.01) == []  # finished trials are never touched


def test_a_dead_workers_trial_is_failed_at_once(tmp_path: Path) -> None:
    study = optuna.create_study(storage=open_storage(str(tmp_path / "j")), study_name="s")
    mine = _running_trial(study, "host:7", beat=time.time())
    _running_trial(study, "host:8", beat=time.time())
    assert fail_worker_trials(study, "host:7") == [mine.number]
    assert [t.state for t in study.get_trials()][:2] == [TrialState.FAIL, TrialState.RUNNING]


def test_grid_claim_refuses_a_point_another_trial_has(tmp_path: Path) -> None:
    grid = make_sampler("grid", SPACE, seed=0)
    study = optuna.create_study(storage=open_storage(str(tmp_path / "j")), sampler=grid)
    first = study.ask()
    check_grid_claim(study, first)  # trial 0 owns grid point 0
    study.tell(first, 1.0)
    later = study.ask()
    grid_id = study.get_trials()[later.number].system_attrs["grid_id"]
    assert grid_id != 0  # a new study hands out every point before any twice
    # Simulate the race: a trial that got point 0 while trial 0 already had it.
    study._storage.set_trial_system_attr(later._trial_id, "grid_id", 0)
    with pytest.raises(DuplicateGridPoint, match="already in trial 0"):
        check_grid_claim(study, later)


def test_study_summary_best_rows_and_importance(tmp_path: Path) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial: optuna.Trial) -> float:
        values = suggest(trial, SPACE)
        if trial.number == 3:
            raise optuna.TrialPruned()
        return (values["optim.lr"] - 0.02) ** 2 + 0.001 * len(values["model.hidden_sizes"])

    study.optimize(objective, n_trials=12)
    s = study_summary(study, SPACE)
    assert s["counts"] == {"complete": 11, "pruned": 1}
    assert s["best"]["params"]["optim.lr"] == pytest.approx(0.02)
    assert s["best"]["params"]["model.hidden_sizes"] == [8]  # a list again, not its JSON text
    assert [t["number"] for t in s["trials"]] == list(range(12))
    assert set(s["importances"]) <= {"optim.lr", "model.hidden_sizes"}
    assert s["importances"] and sum(s["importances"].values()) == pytest.approx(1.0)


@pytest.mark.slow
def test_on_postgresql_or_sqlite_a_killed_workers_trial_is_failed_by_heartbeat_and_retried(
    tmp_path: Path,
) -> None:
    """Optuna's heartbeat, as skier configures it: a worker process is killed mid-trial; the
    next trial started after the grace period fails the silent one and re-queues it."""
    import multiprocessing

    from ._slow_worker import run_one_slow_trial

    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = open_storage(url, heartbeat_s=1, grace_s=2, max_retry=1)
    try:
        study = optuna.create_study(storage=storage, study_name="hb")
        worker = multiprocessing.get_context("spawn").Process(
            target=run_one_slow_trial, args=(url, "hb")
        )
        worker.start()
        deadline = time.time() + 60
        while not study.get_trials(states=(TrialState.RUNNING,)) and time.time() < deadline:
            time.sleep(0.2)
        assert study.get_trials(states=(TrialState.RUNNING,)), "the worker never started"
        time.sleep(1.5)  # at least one heartbeat recorded
        worker.kill()
        worker.join()
        time.sleep(3)  # longer than the grace period
        study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=1)
        states = [t.state for t in study.get_trials()]
        assert states == [TrialState.FAIL, TrialState.COMPLETE]  # failed, then its retry ran
        retry = study.get_trials()[1]
        assert retry.system_attrs["failed_trial"] == 0
        assert retry.params == study.get_trials()[0].params
    finally:
        close_storage(storage)
