"""`skier train` with `record.loggers`, SIGKILLed mid-run and resumed: TensorBoard and MLflow
hold every epoch exactly once (read back with their own readers), in the same MLflow run, in
the store MLFLOW_TRACKING_URI names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.e2e.test_cli_train import RESUME_CONFIG, SLOW_MODEL

from skier.record import RunFiles
from skier.train import load_checkpoint

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.mark.slow
def test_sigkill_then_resume_logs_each_epoch_once(tmp_path: Path) -> None:
    (tmp_path / "slowmodel.py").write_text(SLOW_MODEL)
    (tmp_path / "run.yaml").write_text(RESUME_CONFIG + "record: {loggers: [tensorboard, mlflow]}\n")
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    path = os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "CI": "true", "PYTHONPATH": path, "MLFLOW_TRACKING_URI": uri}
    log = tmp_path / "victim.log"
    with log.open("w") as err:
        victim = subprocess.Popen(
            [sys.executable, "-m", "skier", "train", "run.yaml", "--out", "killed"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    deadline = time.monotonic() + 180
    metrics = None
    while time.monotonic() < deadline:
        assert victim.poll() is None, log.read_text()
        found = list((tmp_path / "killed").glob(f"*/{RunFiles.METRICS}"))
        if found and len(found[0].read_text().strip().splitlines()) >= 1 + 3:
            metrics = found[0]
            break
        time.sleep(0.02)
    assert metrics is not None, "the run never reached epoch 3"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    run = metrics.parent
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] < 8

    resumed = subprocess.run(
        [sys.executable, "-m", "skier", "train", "--resume", str(run)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert not (tmp_path / "killed" / RunFiles.MLFLOW_DB).exists()  # the env's store was used

    acc = EventAccumulator(str(run / RunFiles.TENSORBOARD), size_guidance={"scalars": 0})
    acc.Reload()
    for tag in ("loss/train", "loss/val", "lr"):
        assert [e.step for e in acc.Scalars(tag)] == list(range(1, 9)), tag
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("skier")
    assert experiment is not None
    (found,) = client.search_runs([experiment.experiment_id])  # one MLflow run, continued
    assert found.data.tags["skier.run_id"] == run.name
    assert found.data.tags["skier.status"] == "completed"
    for key in ("loss", "val_loss", "lr"):
        steps = sorted(m.step for m in client.get_metric_history(found.info.run_id, key))
        assert steps == list(range(1, 9)), key
