"""The record of a training run, throttled by time (``record.flush_every_s``,
``checkpoint.every_s``): the store and metrics.csv lag the training by at most the stated time
while it runs, and a run that fails or is interrupted still records every epoch it finished,
with its last finished epoch on disk as ``last.pt``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from skier.config import RunConfig, load_config
from skier.errors import TrainingError
from skier.record import RunDir, RunStore, default_store_url
from skier.runner import run_training
from skier.train import Callback
from skier.train.checkpoint import load_checkpoint
from skier.train.state import TrainState


def _config(**extra: object) -> RunConfig:
    overrides = {
        "data.name": "synthetic", "data.samples": 120, "data.features": 4, "data.classes": 2,
        "model.hidden_sizes": [4], "train.epochs": 8, "train.batch_size": 32,
        "record.report": False, "record.plots": False, **extra,
    }  # fmt: skip
    return load_config(None, [f"{k}={v}" for k, v in overrides.items()])


class _Watch(Callback):
    """What the store holds at each epoch's end, seen from inside the run; raises ``exc`` at
    the end of epoch ``at``."""

    stateful = False

    def __init__(self, out: Path, at: int | None = None, exc: BaseException | None = None):
        self.out, self.at, self.exc = out, at, exc
        self.seen: list[int] = []

    def on_epoch_end(self, state: TrainState, logs: Mapping[str, float]) -> None:
        with RunStore(default_store_url(self.out)) as store:
            (record,) = store.list_runs(limit=10)
            self.seen.append(len(store.metrics(record.id)))
        if state.epoch == self.at and self.exc is not None:
            raise self.exc


def test_the_record_is_throttled_while_training_and_whole_at_the_end(tmp_path: Path) -> None:
    watch = _Watch(tmp_path)
    config = _config(**{"record.flush_every_s": 1e6, "checkpoint.every_s": 1e6})
    outcome = run_training(config, out_dir=tmp_path, progress=False, callbacks=[watch])
    assert watch.seen == [0] * 8  # nothing written while training: every epoch held
    with RunStore(default_store_url(tmp_path)) as store:
        assert store.get_run(outcome.run_id).epochs_done == 8
        assert len(store.metrics(outcome.run_id)) == 8
    assert len(RunDir(outcome.run_dir).read_metrics().rows) == 8
    assert load_checkpoint(outcome.run_dir / "checkpoints" / "last.pt")["epoch"] == 8


def test_flush_every_s_zero_records_every_epoch_at_once(tmp_path: Path) -> None:
    watch = _Watch(tmp_path)
    run_training(_config(**{"record.flush_every_s": 0}), out_dir=tmp_path, progress=False,
                 callbacks=[watch])  # fmt: skip
    assert watch.seen == list(range(1, 9))


@pytest.mark.parametrize(
    ("exc", "status"),
    [(TrainingError("boom"), "failed"), (KeyboardInterrupt(), "interrupted")],
)
def test_a_failed_run_records_every_finished_epoch_and_its_position(
    tmp_path: Path, exc: BaseException, status: str
) -> None:
    config = _config(**{"record.flush_every_s": 1e6, "checkpoint.every_s": 1e6})
    with pytest.raises(type(exc)):
        run_training(config, out_dir=tmp_path, progress=False, callbacks=[_Watch(tmp_path, 5, exc)])
    with RunStore(default_store_url(tmp_path)) as store:
        (record,) = store.list_runs(limit=10)
        assert record.status == status
        # epoch 5 raised in a callback after the record's (it is logged, as with no
        # throttle), before its checkpoint was taken: last.pt holds epoch 4, as it always did
        assert record.epochs_done == len(store.metrics(record.id)) == 5
    run = RunDir(Path(record.run_dir or ""))
    assert len(run.read_metrics().rows) == 5
    assert load_checkpoint(run.checkpoints / "last.pt")["epoch"] == 4


def test_a_resumed_run_may_change_how_often_it_records(tmp_path: Path) -> None:
    first = run_training(_config(**{"train.epochs": 3}), out_dir=tmp_path, progress=False)
    more = _config(**{"train.epochs": 5, "checkpoint.every_s": 0, "record.flush_every_s": 0})
    outcome = run_training(more, resume_dir=first.run_dir, progress=False)
    assert outcome.status == "completed" and outcome.result.epochs_done == 5
