"""Faults: a run killed at random moments, again and again, resumes from its last complete
checkpoint and ends bit-identical to a run never interrupted; a failing write stops the run with
a clear error and the previous checkpoint intact."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from skier.config import config_from_mapping
from skier.errors import WriteError
from skier.record import RunStore, default_store_url
from skier.runner import run_training
from skier.train.checkpoint import load_checkpoint

from . import _child

# The long version: SKIER_KILL_LOOP=200 pytest tests/reliability -k kill
KILLS = int(os.environ.get("SKIER_KILL_LOOP", "20"))
# Each resume is killed once it has logged an epoch beyond those logged before, up to 30 ms
# later, so each kill moves the run on by an epoch or two (1.3 on average over 40 kills on two
# busy cores); a kill loses the epochs after the last checkpoint that landed (checkpoints are
# written on a background thread). The run must outlast every kill: three epochs a kill, 60
# for the default 20 kills (as fast as it always was), 600 for 200.
EPOCHS = max(60, 3 * KILLS)
TIMEOUT = 300 + EPOCHS  # seconds for the reference run and the last resume, with room
CONFIG: dict[str, Any] = {
    "data": {"name": "synthetic", "samples": 600, "features": 12, "classes": 3},
    "model": {"hidden_sizes": [32], "dropout": 0.1},
    "optim": {"name": "adam", "lr": 0.01},
    "train": {"epochs": EPOCHS, "batch_size": 32},
    # Every epoch written at once (no time throttle): each kill lands on a fresh checkpoint
    # and record; test_throttled_checkpoints.py covers the throttled defaults.
    "checkpoint": {"every_s": 0},
    "record": {"plots": False, "report": False, "flush_every_s": 0},
}


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "skier.runner", _child.__name__])
    return ctx


def _epochs_logged(run: Path) -> int:
    try:
        return max(len((run / "metrics.csv").read_text().splitlines()) - 1, 0)
    except OSError:
        return 0


def _run_dir(out: Path) -> Path | None:
    found = [p for p in out.iterdir() if p.is_dir()] if out.is_dir() else []
    return found[0] if found else None


@pytest.mark.slow
def test_killed_again_and_again_a_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    ctx = _context()
    reference = ctx.Process(target=_child.train, args=(CONFIG, str(tmp_path / "ref"), None, None))
    reference.start()
    reference.join(TIMEOUT)
    assert reference.exitcode == 0

    out, rng = tmp_path / "killed", random.Random(0)
    first = ctx.Process(target=_child.train, args=(CONFIG, str(out), None, None))
    first.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # one checkpoint before the first kill: one run dir
        run = _run_dir(out)
        if run is not None and (run / "checkpoints" / "last.pt").is_file():
            break
        time.sleep(0.01)
    first.kill()
    first.join()
    run = _run_dir(out)
    assert run is not None
    kills, epochs_seen = 1, []
    while kills <= KILLS:  # the last pass resumes once more and lets the run finish
        # Whatever the moment of the kill, the last checkpoint is complete and loads.
        epochs_seen.append(int(load_checkpoint(run / "checkpoints" / "last.pt")["epoch"]))
        child = ctx.Process(target=_child.train, args=(CONFIG, str(out), str(run), None))
        child.start()
        if kills == KILLS:
            child.join(TIMEOUT)
            assert child.exitcode == 0, f"the last resume failed with {child.exitcode}"
            break
        # Kill once this resume has made progress (an epoch logged), at a random moment
        # around the epoch's end, where the record and the checkpoint are being written.
        logged = _epochs_logged(run)
        while child.is_alive() and _epochs_logged(run) <= max(logged, epochs_seen[-1]):
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.03))
        if not child.is_alive():
            child.join()
            assert child.exitcode == 0
            break
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join()
        kills += 1
    assert kills == KILLS, f"the run finished after {kills} kills, before {KILLS}"
    assert epochs_seen == sorted(epochs_seen)  # never went back
    assert len(set(epochs_seen)) >= KILLS // 2  # killed at many moments
    want = load_checkpoint(_run_dir(tmp_path / "ref") / "checkpoints" / "last.pt")  # type: ignore[operator]
    got = load_checkpoint(run / "checkpoints" / "last.pt")
    assert got["epoch"] == want["epoch"] == EPOCHS
    for key, tensor in want["model"].items():
        assert torch.equal(tensor, got["model"][key]), key
    assert [r["loss"] for r in got["history"]["rows"]] == [
        r["loss"] for r in want["history"]["rows"]
    ]
    with RunStore(default_store_url(out)) as store:
        record = store.get_run(run.name)
        assert record.status == "completed" and record.epochs_done == EPOCHS
        assert len(store.metrics(run.name)) == EPOCHS
        assert len(store.list_runs()) == 1  # no half-made second run
        assert store.params(run.name)["optim.lr"] == "0.01"


def test_a_failing_checkpoint_write_stops_the_run_and_keeps_the_last_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace
    written: list[str] = []

    def disk_fills_up(src: Any, dst: Any) -> None:
        if str(dst).endswith("last.pt"):
            written.append(str(dst))
            if len(written) == 3:
                raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", disk_fills_up)
    config = config_from_mapping({**CONFIG, "train": {"epochs": 6, "batch_size": 64}})
    with pytest.raises(WriteError, match=r"last\.pt' must be writable; got 'No space left"):
        run_training(config, out_dir=tmp_path, progress=False)
    monkeypatch.undo()
    run = _run_dir(tmp_path)
    assert run is not None
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 2  # the one before
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    with RunStore(default_store_url(tmp_path)) as store:
        record = store.get_run(run.name)
    assert record.status == "failed" and "must be writable" in (record.error or "")
    # ... and it resumes from there once the disk has room again.
    resumed = run_training(config, resume_dir=run, progress=False)
    assert resumed.status == "completed" and resumed.result.epochs_done == 6


@pytest.mark.slow
def test_ctrl_c_marks_the_run_interrupted_and_resume_finishes_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml

    config = {
        **CONFIG,
        "data": {**CONFIG["data"], "samples": 200},
        "train": {"epochs": 150, "batch_size": 50},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "CI": "true"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "skier", "train", "run.yaml", "--out", "runs"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    run = None
    while time.monotonic() < deadline:
        run = _run_dir(tmp_path / "runs")
        if run is not None and (run / "checkpoints" / "last.pt").is_file():
            break
        time.sleep(0.02)
    assert run is not None
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    with RunStore(default_store_url(tmp_path / "runs")) as store:
        assert store.get_run(run.name).status == "interrupted"
    stopped_at = int(load_checkpoint(run / "checkpoints" / "last.pt")["epoch"])
    assert 1 <= stopped_at < 150
    resumed = subprocess.run(
        [sys.executable, "-m", "skier", "train", "--resume", str(run)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    with RunStore(default_store_url(tmp_path / "runs")) as store:
        record = store.get_run(run.name)
        assert record.status == "completed" and record.epochs_done == 150
