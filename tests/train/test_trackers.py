"""TensorBoard and MLflow loggers, read back with each tool's own reader.

TensorBoard's ``EventAccumulator`` and MLflow's ``MlflowClient`` are the oracles: every epoch's
scalars, steps and hyper-parameters, after a plain fit, after an interrupted fit is resumed
(each epoch exactly once), and with a tracker that fails (training goes on).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from skier.errors import MissingExtraError, require_extra
from skier.train import (
    Callback,
    Checkpoint,
    FitResult,
    MLflowLogger,
    TensorBoardLogger,
    TrainState,
    fit,
    load_checkpoint,
)
from skier.train.callbacks.trackers import TrackerLogger

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

# MLflow's SQL store trips SQLAlchemy 2.1's deprecation notices when the test reads it back.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

Data = tuple[torch.Tensor, torch.Tensor]
SETTINGS: dict[str, Any] = {"epochs": 6, "batch_size": 32, "lr": 0.05, "seed": 7, "device": "cpu"}
PARAMS = {"optim.lr": 0.05, "optim.name": "sgd", "train.epochs": 6, "train.amp": False}


def _fit(
    model: torch.nn.Module, data: Data, val: Data, callbacks: list[Callback], **kw: Any
) -> FitResult:
    return fit(model, data, val, optimizer="sgd", callbacks=callbacks, **SETTINGS, **kw)


def _scalars(log_dir: Path) -> tuple[EventAccumulator, dict[str, list[tuple[int, float]]]]:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc, {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def _tensorboard_expected(result: FitResult) -> dict[str, list[tuple[int, float]]]:
    """What the epoch rows should become: one tag per key, step = epoch (float32 in events)."""
    from skier.train.callbacks.tensorboard_logger import scalar_tag

    out: dict[str, list[tuple[int, float]]] = {}
    for row in result.history.rows:
        for key, value in row.items():
            if key != "epoch":
                tag = scalar_tag(key)
                out.setdefault(tag, []).append((int(row["epoch"]), value))
    return out


def _assert_tensorboard(log_dir: Path, result: FitResult) -> None:
    _, scalars = _scalars(log_dir)
    for tag, points in _tensorboard_expected(result).items():
        got = scalars[tag]
        assert [s for s, _ in got] == [s for s, _ in points], tag  # each epoch once, in order
        if tag != "epoch_time":  # a re-run epoch's time differs: the first one sent stays
            assert [v for _, v in got] == pytest.approx([v for _, v in points], rel=1e-6), tag
    lrs = result.history.steps["lr"]
    assert scalars["lr/step"] == [(i, pytest.approx(v)) for i, v in enumerate(lrs, 1)]
    assert {"loss/train", "loss/val", "accuracy/train", "accuracy/val"} <= scalars.keys()


def test_tensorboard_scalars_hparams_and_config(
    tmp_path: Path, make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    tb = TensorBoardLogger(tmp_path / "tb", params=PARAMS, config_text="optim:\n  lr: 0.05")
    result = _fit(make_mlp(seed=1), clf_data, clf_val, [tb])
    _assert_tensorboard(tmp_path / "tb", result)
    acc, scalars = _scalars(tmp_path / "tb")
    # HParams tab: the hyper-parameters, and the best and final metrics as its metric columns
    content = acc.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["optim.lr"].number_value == pytest.approx(0.05)
    assert hparams["optim.name"].string_value == "sgd"
    assert hparams["train.amp"].bool_value is False
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    names = {m.name.tag for m in experiment.metric_infos}
    assert {"hparams/best_val_loss", "hparams/final_val_accuracy"} <= names
    best = min(result.history.column("val_loss"))
    assert scalars["hparams/best_val_loss"] == [(6, pytest.approx(best))]
    assert "config/text_summary" in acc.Tags()["tensors"]
    assert tb.failure is None


def _mlflow_history(uri: str, run_id: str) -> tuple[Any, dict[str, list[tuple[int, float]]]]:
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    history = {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        for key in run.data.metrics
    }
    return run, history


def _assert_mlflow_metrics(
    history: Mapping[str, list[tuple[int, float]]], result: FitResult
) -> None:
    for key in result.history.keys:
        if key == "epoch":
            continue
        want = [(int(r["epoch"]), r[key]) for r in result.history.rows if key in r]
        got = sorted(history[key])
        assert [s for s, _ in got] == [s for s, _ in want], key  # every epoch exactly once
        if key != "epoch_time":
            assert [v for _, v in got] == pytest.approx([v for _, v in want]), key
    lrs = result.history.steps["lr"]
    assert sorted(history["lr_step"]) == [(i, pytest.approx(v)) for i, v in enumerate(lrs, 1)]


@pytest.mark.slow
def test_mlflow_run_params_metrics_tags_artifacts(
    tmp_path: Path, make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    artifact = tmp_path / "config.yaml"
    artifact.write_text("optim:\n  lr: 0.05\n")
    ml = MLflowLogger(uri, params=PARAMS, tags={"skier.run_id": "r1", "skier.kind": "train"},
                      artifacts=[artifact], run_name="digits", log_steps=True)  # fmt: skip
    result = _fit(make_mlp(seed=1), clf_data, clf_val, [ml])
    assert ml.failure is None and ml.run_id is not None
    run, history = _mlflow_history(uri, ml.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "digits"
    assert run.data.params == {k: str(v) for k, v in PARAMS.items()}
    assert run.data.tags["skier.run_id"] == "r1" and run.data.tags["skier.status"] == "completed"
    _assert_mlflow_metrics(history, result)
    assert history["best_val_loss"] == [(6, pytest.approx(min(result.history.column("val_loss"))))]
    artifacts = MlflowClient(tracking_uri=uri).list_artifacts(ml.run_id)
    assert [a.path for a in artifacts] == ["config.yaml"]
    # A new experiment in a SQLite store keeps its files beside the database, not in the cwd.
    assert (tmp_path / "mlartifacts").is_dir()


@pytest.mark.slow
@pytest.mark.parametrize("flush_every_s", [0.0, 1e9], ids=["sent-each-epoch", "sent-at-end"])
def test_resumed_fit_logs_each_epoch_once(
    tmp_path: Path,
    make_mlp: Any,
    clf_data: Data,
    clf_val: Data,
    flush_every_s: float,
    interrupt_at: Any,
) -> None:
    """Interrupted at epoch 4's end (after the loggers sent it, or before they sent anything)
    with the last checkpoint at epoch 3; the resumed fit's records hold epochs 1-6 once each."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    position = tmp_path / "position.json"

    def loggers() -> list[Callback]:
        return [
            TensorBoardLogger(tmp_path / "tb", flush_every_s=flush_every_s),
            MLflowLogger(uri, position_file=position, flush_every_s=flush_every_s, log_steps=True),
        ]

    ckpt = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        _fit(make_mlp(seed=1), clf_data, clf_val,
             [*loggers(), Checkpoint(ckpt, every=1), interrupt_at(4)])  # fmt: skip
    assert load_checkpoint(ckpt / "last.pt")["epoch"] == 3
    resumed = loggers()
    result = _fit(make_mlp(seed=1), clf_data, clf_val,
                  [*resumed, Checkpoint(ckpt, every=1)],
                  resume=ckpt / "last.pt")  # fmt: skip
    full = _fit(make_mlp(seed=1), clf_data, clf_val, [])
    assert [r["loss"] for r in result.history.rows] == [r["loss"] for r in full.history.rows]
    _assert_tensorboard(tmp_path / "tb", result)
    ml = resumed[1]
    assert isinstance(ml, MLflowLogger) and ml.run_id is not None
    runs = MlflowClient(tracking_uri=uri).search_runs(
        [MlflowClient(tracking_uri=uri).get_experiment_by_name("skier").experiment_id]
    )
    assert [r.info.run_id for r in runs] == [ml.run_id]  # the same MLflow run went on
    _assert_mlflow_metrics(_mlflow_history(uri, ml.run_id)[1], result)


class Broken(TrackerLogger):
    name = "broken"

    def _open(self, state: TrainState, position: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def _send(self, rows: Any, steps: Any) -> None:
        raise ConnectionError("tracking server at http://127.0.0.1:9 refused the connection")


def test_failing_tracker_never_stops_training(
    tmp_path: Path, make_mlp: Any, clf_data: Data, clf_val: Data
) -> None:
    lines: list[str] = []
    broken = Broken(echo=lines.append, flush_every_s=0.0, position_file=tmp_path / "p.json")
    (tmp_path / "a_file").write_text("")  # a store whose folder is a file cannot be opened
    bad_uri = MLflowLogger(f"sqlite:///{tmp_path / 'a_file' / 'x.db'}", echo=lines.append)
    result = _fit(make_mlp(seed=1), clf_data, clf_val, [broken, bad_uri])
    assert result.epochs_done == 6
    assert len(lines) == 2  # once each, not once per epoch
    # (the store fails at fit start, the server at epoch 1; each on its own sender thread)
    (mlflow_line,) = [line for line in lines if "mlflow" in line]
    (broken_line,) = [line for line in lines if "broken" in line]
    assert broken_line.startswith("skier: the broken logger failed") and "refused" in broken_line
    assert mlflow_line.startswith("skier: the mlflow logger failed")
    assert broken.failure is not None and "ConnectionError" in broken.failure
    assert bad_uri.failure is not None
    assert "ConnectionError" in (tmp_path / "p.json").read_text()  # the record notes it


def test_missing_package_names_the_extra() -> None:
    with pytest.raises(MissingExtraError, match=r"pip install 'skier\[mlflow\]'"):
        require_extra("skier_no_such_package", "mlflow", "MLflowLogger")


def test_other_ranks_log_nothing(tmp_path: Path, make_mlp: Any) -> None:
    from skier.history import History

    tb = TensorBoardLogger(tmp_path / "tb")
    history = History([{"epoch": 1.0, "loss": 1.0}])
    state = TrainState(
        make_mlp(),
        epochs=1,
        task="classification",
        history=history,
        available_keys=frozenset({"loss"}),
        is_main=False,
    )
    tb.on_fit_start(state)
    tb.on_epoch_end(state, {"loss": 1.0})
    tb.on_fit_end(state, {"loss": 1.0})
    assert not (tmp_path / "tb").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "recorded", [2, 0, None], ids=["position-at-2", "no-position-but-the-run", "no-run-id"]
)
def test_killed_between_a_send_and_its_position_write(
    tmp_path: Path,
    make_mlp: Any,
    clf_data: Data,
    clf_val: Data,
    recorded: int | None,
    interrupt_at: Any,
) -> None:
    """Both tools had every epoch through 4 (and its lr steps), but the process died before
    the positions after epoch ``recorded`` were written (None: not even the MLflow run's id,
    which the run's tag then finds); the resume from the epoch-3 checkpoint sends epochs 3
    and 4 again. Read back, each epoch and step is there once, in one MLflow run."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    position = tmp_path / "trackers.json"

    def loggers() -> list[Callback]:
        return [
            TensorBoardLogger(tmp_path / "tb", position_file=position, flush_every_s=0.0),
            MLflowLogger(
                uri,
                position_file=position,
                flush_every_s=0.0,
                log_steps=True,
                resume_tag=("skier.run_id", "r1"),
            ),
        ]

    ckpt, first = tmp_path / "ckpt", loggers()
    with pytest.raises(KeyboardInterrupt):
        _fit(make_mlp(seed=1), clf_data, clf_val,
             [*first, Checkpoint(ckpt, every=1), interrupt_at(4)])  # fmt: skip
    assert all(lg.drain(30) for lg in first if isinstance(lg, TrackerLogger))  # all sent
    saved = json.loads(position.read_text())
    for entry in saved.values():  # what a kill in the window leaves: a position behind
        assert entry["epoch"] == 4
        per_epoch = entry["steps"]["lr"] // 4
        entry["epoch"], entry["steps"] = recorded or 0, {"lr": (recorded or 0) * per_epoch}
    run_id = saved["mlflow"]["run_id"]
    if recorded is None:
        del saved["mlflow"]["run_id"]
    position.write_text(json.dumps(saved))
    resumed = loggers()
    result = _fit(make_mlp(seed=1), clf_data, clf_val,
                  [*resumed, Checkpoint(ckpt, every=1)],
                  resume=ckpt / "last.pt")  # fmt: skip
    assert [int(r["epoch"]) for r in result.history.rows] == [1, 2, 3, 4, 5, 6]
    _assert_tensorboard(tmp_path / "tb", result)
    # The reader TensorBoard's own server uses (--load_fast=false) hides the same events.
    from tensorboard.backend.event_processing import plugin_event_accumulator

    served = plugin_event_accumulator.EventAccumulator(str(tmp_path / "tb"))
    served.Reload()
    assert [e.step for e in served.Tensors("loss/train")] == [1, 2, 3, 4, 5, 6]
    ml = resumed[1]
    assert isinstance(ml, MLflowLogger) and ml.run_id == run_id
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("skier")
    assert experiment is not None and len(client.search_runs([experiment.experiment_id])) == 1
    _assert_mlflow_metrics(_mlflow_history(uri, ml.run_id)[1], result)
    assert all(lg.failure is None for lg in resumed if isinstance(lg, TrackerLogger))
