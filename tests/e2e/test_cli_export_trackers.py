"""`skier export RUN --to tensorboard|mlflow`: a run recorded without loggers, sent afterwards,
read back with EventAccumulator and MlflowClient: every epoch, once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from skier.config import load_config
from skier.record import RunFiles
from skier.runner import run_training

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def test_export_sends_a_recorded_run_to_each_tracker(skier_cli: Any, tmp_path: Path) -> None:
    overrides = ["data.name=digits", "model.hidden_sizes=[16]", "train.epochs=3",
                 "train.batch_size=256", "record.plots=false", "record.report=false"]  # fmt: skip
    outcome = run_training(load_config(None, overrides), out_dir=tmp_path / "runs", progress=False)
    history = outcome.result.history
    # A second TensorBoard export adds nothing: it shares the position of the first.
    for to in ("tensorboard", "mlflow", "tensorboard"):
        proc = skier_cli("export", outcome.run_id, "--dir", "runs", "--to", to)
        assert proc.returncode == 0, proc.stderr
        assert f"3 epochs to {to}: ok" in proc.stdout
    folder = outcome.run_dir / RunFiles.TENSORBOARD
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss/val")] == [1, 2, 3]
    assert [e.value for e in acc.Scalars("loss/val")] == pytest.approx(history.column("val_loss"))
    assert len(acc.Scalars("lr/step")) == len(history.steps["lr"])
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / RunFiles.MLFLOW_DB}")
    experiment = client.get_experiment_by_name("skier")
    assert experiment is not None
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.data.tags["skier.run_id"] == outcome.run_id
    assert found.data.params["train.epochs"] == "3"
    loss = client.get_metric_history(found.info.run_id, "val_loss")
    assert sorted(m.step for m in loss) == [1, 2, 3]
    assert {a.path for a in client.list_artifacts(found.info.run_id)} >= {RunFiles.CONFIG}
