"""One run lifecycle: a run that raises is marked failed (with the reason) or interrupted
(Ctrl-C) and the exception goes on; a run that returns ends completed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

import skier.diagnostics.lr_range
import skier.runner.cv
from skier.config import RunConfig, load_config
from skier.config.search import CrossValidationConfig
from skier.errors import TrainingError
from skier.record import RunStore, default_store_url
from skier.runner import run_cv, run_training
from skier.runner._sources import load_source
from skier.runner.diagnose import run_lr_find
from skier.runner.lifecycle import INTERRUPTED, run_ending
from skier.train import Callback
from skier.train.state import TrainState


def _config(**extra: object) -> RunConfig:
    overrides = {
        "data.name": "synthetic", "data.samples": 120, "data.features": 4, "data.classes": 2,
        "model.hidden_sizes": [4], "train.epochs": 2, "train.batch_size": 32,
        "checkpoint.enabled": False, "record.report": False, "record.plots": False,
        **extra,
    }  # fmt: skip
    return load_config(None, [f"{k}={v}" for k, v in overrides.items()])


def _only_run(out: Path) -> tuple[str, str | None]:
    with RunStore(default_store_url(out)) as store:
        (record,) = store.list_runs(limit=10)
        return record.status, record.error


class _Raise(Callback):
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        raise self.exc


def test_run_ending_marks_failed_interrupted_or_leaves_completed(tmp_path: Path) -> None:
    url = default_store_url(tmp_path)
    with RunStore(url) as store:
        ids = [store.create_run(f"r{i}", {}, tmp_path / f"r{i}") for i in range(3)]
    with pytest.raises(TrainingError, match="boom"), run_ending(url, ids[0]):
        raise TrainingError("boom")
    with pytest.raises(KeyboardInterrupt), run_ending(url, ids[1]):
        raise KeyboardInterrupt
    with run_ending(url, ids[2]):
        pass
    with RunStore(url) as store:
        first, second, third = (store.get_run(i) for i in ids)
    assert (first.status, first.error) == ("failed", "boom")
    assert (second.status, second.error) == ("interrupted", INTERRUPTED)
    assert third.status == "running"  # the run itself says how it ended


@pytest.mark.parametrize(
    ("exc", "status", "error"),
    [(TrainingError("boom"), "failed", "boom"), (KeyboardInterrupt(), "interrupted", INTERRUPTED)],
)
def test_train_that_raises_is_recorded_and_reraises(
    tmp_path: Path, exc: BaseException, status: str, error: str
) -> None:
    with pytest.raises(type(exc)):
        run_training(_config(), out_dir=tmp_path, progress=False, callbacks=[_Raise(exc)])
    assert _only_run(tmp_path) == (status, error)


def test_train_that_returns_is_completed(tmp_path: Path) -> None:
    outcome = run_training(_config(), out_dir=tmp_path, progress=False)
    assert outcome.status == "completed"
    assert _only_run(tmp_path) == ("completed", None)


@pytest.mark.parametrize(
    ("exc", "status", "error"),
    [(TrainingError("boom"), "failed", "boom"), (KeyboardInterrupt(), "interrupted", INTERRUPTED)],
)
def test_lr_find_that_raises_is_recorded_and_reraises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException, status: str, error: str
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise exc

    monkeypatch.setattr(skier.diagnostics.lr_range, "lr_range_test", broken)
    with pytest.raises(type(exc)):
        run_lr_find(load_source(_config()), out_dir=tmp_path)
    assert _only_run(tmp_path) == (status, error)


@pytest.mark.parametrize(
    ("exc", "status", "error"),
    [(TrainingError("boom"), "failed", "boom"), (KeyboardInterrupt(), "interrupted", INTERRUPTED)],
)
def test_cv_that_raises_is_recorded_and_reraises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException, status: str, error: str
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise exc

    monkeypatch.setattr(skier.runner.cv, "_run_folds", broken)
    with pytest.raises(type(exc)):
        run_cv(_config(), cv=CrossValidationConfig(folds=2, refit=False), out_dir=tmp_path)
    assert _only_run(tmp_path) == (status, error)
