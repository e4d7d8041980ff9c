"""A tracking server that is down, or that never answers, never holds up training: the MLflow
logger sends on its own thread, fails at once on a port that takes no connection, and waits at
most ``finish_timeout_s`` at the end for one that accepted the connection and went silent. Each
says so once, in one line, and the run record notes the failed logger."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skier.config import load_config
from skier.record import RunFiles
from skier.runner import run_training
from skier.train import MLflowLogger, fit

pytest.importorskip("mlflow")

# Imported here, as in a process that has used MLflow: the timings are of the sending, not of
# MLflow's first import (seconds, paid once, on the sender thread).
import mlflow.tracking  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SETTINGS: dict[str, Any] = {"epochs": 8, "batch_size": 16, "lr": 0.05, "seed": 7,
                            "device": "cpu", "optimizer": "sgd"}  # fmt: skip


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that takes connections (the kernel's backlog) and never answers a request."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def _timed_fit(make_mlp: Any, data: Any, val: Any, callbacks: list[Any]) -> float:
    start = time.perf_counter()
    result = fit(make_mlp(seed=1), data, val, callbacks=callbacks, **SETTINGS)
    assert result.epochs_done == SETTINGS["epochs"]
    return time.perf_counter() - start


def _baseline(make_mlp: Any, data: Any, val: Any) -> float:
    _timed_fit(make_mlp, data, val, [])  # warm-up
    return min(_timed_fit(make_mlp, data, val, []) for _ in range(2))


def test_an_unreachable_server_costs_training_nothing(
    make_mlp: Any, clf_data: Any, clf_val: Any
) -> None:
    uri = f"http://127.0.0.1:{_closed_port()}"
    baseline = _baseline(make_mlp, clf_data, clf_val)
    lines: list[str] = []
    loggers = [MLflowLogger(uri, flush_every_s=0.0, echo=lines.append) for _ in range(2)]
    # Not MLflow's minutes of retries (the fastest of two: the machine may be loaded).
    took = min(_timed_fit(make_mlp, clf_data, clf_val, [logger]) for logger in loggers)
    assert took < 2 * baseline + 3.0, (took, baseline)
    logger = loggers[0]
    assert len(lines) == 2, lines  # once each, not once per epoch
    assert lines[0].startswith("skier: the mlflow logger failed and is off for this run")
    assert f"cannot reach the MLflow tracking server at {uri}" in lines[0]
    assert logger.failure is not None and logger.failure.startswith("ConnectionError")


def test_a_server_that_never_answers_is_waited_for_at_most_the_limit(
    make_mlp: Any, clf_data: Any, clf_val: Any, silent_server: str
) -> None:
    baseline = _baseline(make_mlp, clf_data, clf_val)
    lines: list[str] = []
    loggers = [MLflowLogger(silent_server, flush_every_s=0.0, finish_timeout_s=1.0,
                            echo=lines.append) for _ in range(2)]  # fmt: skip
    # Every epoch went on while MLflow waited for its first answer; the end waited 1 s.
    took = min(_timed_fit(make_mlp, clf_data, clf_val, [logger]) for logger in loggers)
    assert took < 2 * baseline + 4.0, (took, baseline)
    assert took >= 1.0
    assert len(lines) == 2, lines  # once each
    assert "TimeoutError: still sending after 1 s at the end" in lines[0]


def test_the_run_record_notes_the_unreachable_logger(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{_closed_port()}"
    overrides = {
        "data.name": "synthetic", "data.samples": 120, "data.features": 6, "data.classes": 3,
        "model.hidden_sizes": [8], "train.epochs": 3, "train.batch_size": 32,
        "record.loggers": "[mlflow]", "record.mlflow_uri": uri,
    }  # fmt: skip
    config = load_config(None, [f"{k}={v}" for k, v in overrides.items()])
    lines: list[str] = []
    outcome = run_training(config, out_dir=tmp_path, progress=False, echo=lines.append)
    assert outcome.status == "completed"
    said = [line for line in lines if "mlflow logger" in line]
    assert len(said) == 1 and "cannot reach" in said[0]
    loggers = json.loads((outcome.run_dir / RunFiles.RESULT).read_text())["loggers"]
    assert loggers["mlflow"].startswith("failed: ConnectionError: cannot reach")


def test_a_logger_reused_after_a_fit_that_raised_has_one_sender(
    tmp_path: Path, make_mlp: Any, clf_data: Any, clf_val: Any, interrupt_at: Any
) -> None:
    """A fit that raises leaves its sender open (no fit end); the next fit with the same
    logger lets it send what it had, stops it, and starts its own."""
    pytest.importorskip("tensorboard")
    from skier.train import TensorBoardLogger

    tb = TensorBoardLogger(tmp_path / "tb", flush_every_s=0.0)
    with pytest.raises(KeyboardInterrupt):
        fit(make_mlp(seed=1), clf_data, clf_val, callbacks=[tb, interrupt_at(2)], **SETTINGS)
    first = tb._thread
    assert first is not None and first.is_alive()  # open, idle
    fit(make_mlp(seed=1), clf_data, clf_val, callbacks=[tb], **SETTINGS)
    second = tb._thread
    assert second is not None and second is not first
    first.join(10)
    assert not first.is_alive() and not second.is_alive()
    assert tb.failure is None
    assert (
        json.loads((tmp_path / "tb" / "skier_position.json").read_text())["tensorboard"]["epoch"]
        == SETTINGS["epochs"]
    )
