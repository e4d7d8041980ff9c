"""`record.loggers: [tensorboard, mlflow]`: a recorded run copied to each tracker, read back
with TensorBoard's EventAccumulator and MLflow's MlflowClient."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from PIL import Image

from skier.config import RunConfig, load_config
from skier.record import RunFiles
from skier.runner import run_training

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _config(**extra: object) -> RunConfig:
    overrides = {
        "data.name": "digits", "model.hidden_sizes": [16], "train.epochs": 3,
        "train.batch_size": 256, "optim.name": "sgd", "optim.lr": 0.1,
        "record.loggers": "[tensorboard, mlflow]", **extra,
    }  # fmt: skip
    return load_config(None, [f"{k}={v}" for k, v in overrides.items()])


def test_a_run_reaches_both_trackers(tmp_path: Path) -> None:
    lines: list[str] = []
    config = _config(**{"record.mlflow_log_checkpoint": "true"})
    outcome = run_training(config, out_dir=tmp_path, progress=False, echo=lines.append)
    assert outcome.status == "completed"
    history = outcome.result.history
    run = outcome.run_dir
    # TensorBoard: in the run directory, every epoch of every metric
    acc = EventAccumulator(
        str(run / RunFiles.TENSORBOARD), size_guidance={"scalars": 0, "images": 0}
    )
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss/train")] == [1, 2, 3]
    assert [e.value for e in acc.Scalars("loss/val")] == pytest.approx(
        history.column("val_loss"), rel=1e-6
    )
    assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")
    # the run's figures as images, pixel for pixel the PNGs in the run directory
    pngs = sorted(run.glob("*.png"))
    assert run / RunFiles.LEARNING_CURVES_PNG in pngs
    assert sorted(acc.Tags()["images"]) == sorted(f"figures/{p.stem}" for p in pngs)
    for png in pngs:
        (image,) = acc.Images(f"figures/{png.stem}")
        expected = np.round(imread(str(png))[:, :, :3] * 255)
        shown = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
        assert (image.height, image.width) == expected.shape[:2] and image.step == 3
        assert np.abs(shown.astype(float) - expected).max() <= 1
    # MLflow: one run in the store beside the run directories, with the skier run's facts
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / RunFiles.MLFLOW_DB}")
    experiment = client.get_experiment_by_name("skier")
    assert experiment is not None
    (found,) = client.search_runs([experiment.experiment_id])
    tags, params = found.data.tags, found.data.params
    assert tags["skier.run_id"] == outcome.run_id and tags["skier.kind"] == "train"
    assert tags["skier.status"] == "completed" and found.info.status == "FINISHED"
    assert params["optim.lr"] == "0.1" and params["model.hidden_sizes"] == "[16]"
    loss = client.get_metric_history(found.info.run_id, "val_loss")
    assert [m.step for m in loss] == [1, 2, 3]
    assert [m.value for m in loss] == pytest.approx(history.column("val_loss"))
    names = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {RunFiles.CONFIG, RunFiles.RESULT, RunFiles.REPORT, "checkpoints"} <= names
    # record.mlflow_log_checkpoint: the best checkpoint, byte for byte
    (best,) = client.list_artifacts(found.info.run_id, "checkpoints")
    assert best.path == "checkpoints/best.pt"
    got = client.download_artifacts(found.info.run_id, best.path, str(tmp_path / "dl"))
    assert Path(got).read_bytes() == (run / "checkpoints" / "best.pt").read_bytes()
    result = json.loads((run / RunFiles.RESULT).read_text())
    assert result["loggers"] == {"tensorboard": "ok", "mlflow": "ok"}
    position = json.loads((run / RunFiles.TRACKERS_JSON).read_text())
    assert position["mlflow"]["run_id"] == found.info.run_id
    assert position["mlflow"]["epoch"] == position["tensorboard"]["epoch"] == 3


def test_an_unusable_tracker_never_stops_the_run(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")  # a store inside a file cannot be opened
    config = _config(**{"record.mlflow_uri": f"sqlite:///{tmp_path / 'a_file' / 'm.db'}"})
    lines: list[str] = []
    outcome = run_training(config, out_dir=tmp_path / "runs", progress=False, echo=lines.append)
    assert outcome.status == "completed" and outcome.result.epochs_done == 3
    said = [line for line in lines if "logger failed" in line]
    assert len(said) == 1 and said[0].startswith("skier: the mlflow logger failed")
    result = json.loads((outcome.run_dir / RunFiles.RESULT).read_text())
    assert result["loggers"]["tensorboard"] == "ok"
    assert result["loggers"]["mlflow"].startswith("failed: ")
    assert (outcome.run_dir / RunFiles.METRICS).is_file()  # skier's own record is whole


def test_a_missing_package_is_refused_before_the_run_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from skier.errors import MissingExtraError

    real = importlib.util.find_spec
    monkeypatch.setattr(  # as if mlflow were not installed
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    with pytest.raises(MissingExtraError, match=r"pip install 'skier\[mlflow\]'"):
        run_training(_config(), out_dir=tmp_path, progress=False)
    assert not any(p.is_dir() for p in tmp_path.iterdir())  # no run directory was created
