"""Fixtures for the read side: stores (SQLite, and PostgreSQL when it answers) and a runs folder
holding one run of every kind, made by hand from what the writers write (fast: no training)."""

from __future__ import annotations

import functools
import io
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from skier.history import History
from skier.record import RunDir, RunStore, default_store_url, new_run_id

EVIL = "<script>alert(1)</script>"
POSTGRES_URL = os.environ.get(
    "SKIER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[object]:
    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except (SQLAlchemyError, ImportError) as exc:
        engine.dispose()
        pytest.skip(f"PostgreSQL not reachable: {str(exc).splitlines()[0]}")
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store' / 'skier.db'}"
        return
    engine = request.getfixturevalue("postgres_admin")
    schema = f"skier_report_{secrets.token_hex(4)}"
    with engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?connect_timeout=3&options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:  # type: ignore[attr-defined]
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


@functools.cache
def png(label: str = "x", width: float = 2.0) -> bytes:
    figure = Figure(figsize=(width, 1.5))
    FigureCanvasAgg(figure)
    figure.add_subplot().plot([0, 1], [1, 0], label=label)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=40)
    return buffer.getvalue()


@dataclass
class Fabricated:
    root: Path
    url: str
    train: str
    other: str
    cv: str
    fold: str
    tune: str
    trial: str
    diagnostics: dict[str, str]


def _history(epochs: int, scale: float = 1.0) -> History:
    history = History()
    for e in range(1, epochs + 1):
        history.append(
            {
                "epoch": e,
                "loss": scale / e,
                "error": 0.5 * scale / e,
                "val_loss": scale * 1.1 / e,
                "val_error": 0.6 * scale / e,
                "lr": 0.1,
            }
        )
    return history


def _new(store: RunStore, root: Path, name: str, config: dict, **link: str) -> tuple[str, RunDir]:
    run = RunDir.create(root, new_run_id())
    store.create_run(name, config, run.path, run_id=run.run_id, **link)  # type: ignore[arg-type]
    return run.run_id, run


def _training(
    store: RunStore, root: Path, name: str, *, epochs: int, scale: float, lr: float, **link: str
) -> str:
    config = {"optim": {"name": "sgd", "lr": lr}, "train": {"epochs": epochs}}
    run_id, run = _new(store, root, name, config, **link)
    history = _history(epochs, scale)
    for row in history.rows:
        store.log_epoch(run_id, int(row["epoch"]), row)
    run.write_config(yaml.safe_dump(config))
    run.write_metrics(history)
    (run.path / "lr.csv").write_text(
        "step,lr\n" + "".join(f"{i},{0.1 * 0.9**i!r}\n" for i in range(1, 4 * epochs + 1))
    )
    (run.path / "learning_curves.png").write_bytes(png())
    (run.path / "gradient_flow.png").write_bytes(png())
    (run.path / "lr_find.png").write_bytes(png())
    result = {
        "run_id": run_id,
        "name": name,
        "status": "stopped",
        "epochs_done": epochs,
        "best_epoch": epochs - 1,
        "monitor": "val_loss",
        "best_value": history.rows[-2]["val_loss"],
        "stop_reason": f"early stopping {EVIL}",
        "test_metrics": {"test_loss": 0.3 * scale, "test_accuracy": 0.9 / scale},
        "lr_find": {"lr": 0.01, "suggestion": "valley"},
    }
    run.write_result(result)
    store.finish_run(
        run_id,
        "stopped",
        best_epoch=epochs - 1,
        monitor="val_loss",
        best_value=result["best_value"],  # type: ignore[arg-type]
        test_metrics=result["test_metrics"],  # type: ignore[arg-type]
        stop_reason=result["stop_reason"],  # type: ignore[arg-type]
        duration_s=1.5,
    )
    return run_id


def _diagnostic(
    store: RunStore, root: Path, source: str, kind: str, summary: dict, figures: list[str]
) -> str:
    run_id, run = _new(store, root, f"{kind}-{EVIL}", {kind: {"points": 5}}, kind=kind,
                       parent_id=source)  # fmt: skip
    run.checkpoints.rmdir()
    for name in figures:
        (run.path / name).write_bytes(png())
    run.write_result(
        {"run_id": run_id, "kind": kind, "status": "completed", "source_run": source,
         "source": str(root / source), "summary": summary, "result": {}}
    )  # fmt: skip
    store.finish_run(run_id, "completed", duration_s=0.5, summary=summary)
    return run_id


@pytest.fixture
def fabricated(tmp_path: Path) -> Iterator[Fabricated]:
    """A runs folder and store with a training run looked at by every diagnostic, a second
    training run, a CV run with a fold, and a search with a trial."""
    root = tmp_path / "runs"
    url = default_store_url(root)
    with RunStore(url) as store:
        train = _training(store, root, EVIL, epochs=6, scale=1.0, lr=0.1)
        other = _training(store, root, "other run", epochs=4, scale=2.0, lr=0.01)
        diagnostics = {
            "lr_find": _diagnostic(store, root, train, "lr_find",
                                   {"suggestion": "valley", "lr": 0.003, "diverged": True},
                                   ["lr_find.png"]),
            "landscape": _diagnostic(store, root, train, "landscape",
                                     {"dims": 2, "direction": "random", "minimum": 0.1},
                                     ["landscape.png", "landscape_log.png"]),
            "connectivity": _diagnostic(store, root, train, "landscape",
                                        {"dims": 1, "direction": "init", "minimum": 0.2},
                                        ["landscape.png"]),
            "connect": _diagnostic(
                store, root, train, "connect",
                {"curve": "bezier", "bends": 1, "barrier_line": 0.8, "barrier_curve": 0.05},
                ["connectivity.png"],
            ),
            "sharpness": _diagnostic(store, root, train, "sharpness",
                                     {"top_eigenvalue": 12.5, "eigenvalues": [12.5, 3.0],
                                      "trace": 40.0}, ["sharpness.png", "hessian_spectrum.png"]),
        }  # fmt: skip
        cv, cv_dir = _new(store, root, "cv-run", {"cv": {"folds": 2}}, kind="cv")
        (cv_dir.path / "cv_curves.png").write_bytes(png())
        fold = _training(store, cv_dir.path / "folds", "fold 1", epochs=3, scale=1.5, lr=0.1,
                         kind="cv_fold", parent_id=cv)  # fmt: skip
        cv_summary = {
            "metric": "val_loss", "value": 0.5, "std": 0.05, "plan": "2-fold",
            "mean": {"val_loss": 0.5, "val_error": 0.2}, "std_by_metric": {"val_loss": 0.05,
            "val_error": 0.01}, "median_epoch": 3, "chosen_epochs": [3, 3],
            "folds": [{"number": 1, "repeat": 1, "fold": 1, "run_id": fold, "status": "completed",
                       "epochs_done": 3, "chosen_epoch": 3, "val_loss": 0.45, "val_error": EVIL}],
            "run_id": cv, "name": "cv-run", "kind": "cv", "status": "completed",
        }  # fmt: skip
        cv_dir.write_result(cv_summary)
        store.finish_run(cv, "completed", monitor="val_loss", best_value=0.5, summary=cv_summary)
        tune, tune_dir = _new(store, root, "tune-run", {"search": {}}, kind="tune")
        for name in ("optimization_history.png", "param_importances.png"):
            (tune_dir.path / name).write_bytes(png())
        trial = _training(store, tune_dir.path / "trials", "trial 0", epochs=2, scale=1.2,
                          lr=0.05, kind="trial", parent_id=tune)  # fmt: skip
        tune_summary = {
            "study": "study-1", "direction": "minimize", "metric": "val_loss",
            "objective": "val_loss", "counts": {"complete": 1, "pruned": 1},
            "best": {"number": 0, "value": 0.4, "params": {"optim.lr": 0.05}},
            "space": {"optim.lr": {"type": "float", "low": 0.001, "high": 0.1}},
            "importances": {"optim.lr": 1.0},
            "trials": [{"number": 0, "state": "complete", "value": 0.4,
                        "params": {"optim.lr": 0.05}, "epochs": 2, "note": None},
                       {"number": 1, "state": "pruned", "value": 0.9,
                        "params": {"optim.lr": 0.001}, "epochs": 1, "note": EVIL}],
            "run_id": tune, "name": "tune-run", "kind": "tune", "status": "completed",
        }  # fmt: skip
        tune_dir.write_result(tune_summary)
        store.finish_run(tune, "completed", monitor="val_loss", best_value=0.4,
                         summary=tune_summary)  # fmt: skip
    yield Fabricated(root, url, train, other, cv, fold, tune, trial, diagnostics)


def read_json(path: Path) -> object:
    return json.loads(path.read_text())
