"""With ``skier train``'s time-throttled checkpoints and record (``checkpoint.every_s``,
``record.flush_every_s``), a run killed outright (SIGKILL) at random moments loses at most
``every_s`` seconds plus one epoch of work, and resumes to a run bit-identical to one never
interrupted."""

from __future__ import annotations

import multiprocessing
import random
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from skier.record import RunStore, default_store_url
from skier.train.checkpoint import load_checkpoint

from . import _child

EVERY_S = 0.3
KILLS = 3
# Writing a checkpoint (encode, then the background thread's write) and the scheduling of two
# busy cores: slack on top of the stated bound, well under the kills' spread (0.5-2.0 s).
SLACK_S = 0.5
CONFIG: dict[str, Any] = {
    "data": {"name": "synthetic", "samples": 600, "features": 12, "classes": 3},
    "model": {"hidden_sizes": [32], "dropout": 0.1},
    "optim": {"name": "adam", "lr": 0.01},
    "train": {"epochs": 2500, "batch_size": 32},  # outlasts every kill on a fast machine
    "checkpoint": {"every_s": EVERY_S},
    "record": {"plots": False, "report": False, "flush_every_s": EVERY_S},
}


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "skier.runner", _child.__name__])
    return ctx


def _wait_for(path: Path, since: float, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.stat().st_mtime > since:
            return
        time.sleep(0.005)
    raise AssertionError(f"{path} was not written in {timeout} s")


@pytest.mark.slow
def test_a_throttled_run_killed_loses_at_most_every_s_and_resumes_exactly(tmp_path: Path) -> None:
    ctx = _context()
    reference = ctx.Process(target=_child.train, args=(CONFIG, str(tmp_path / "ref"), None, None))
    reference.start()
    reference.join(600)
    assert reference.exitcode == 0

    out, rng = tmp_path / "killed", random.Random(0)
    run: Path | None = None
    positions = []
    for kill in range(KILLS + 1):
        child = ctx.Process(
            target=_child.train, args=(CONFIG, str(out), str(run) if run else None, None)
        )
        started = time.time()
        child.start()
        if kill == KILLS:  # the last resume runs to the end
            child.join(600)
            assert child.exitcode == 0
            break
        while run is None:
            found = [p for p in out.iterdir() if p.is_dir()] if out.is_dir() else []
            run = found[0] if found else None
            time.sleep(0.005)
        last = run / "checkpoints" / "last.pt"
        _wait_for(last, since=started)  # this process has written a checkpoint
        time.sleep(rng.uniform(0.5, 2.0))
        assert child.is_alive(), "the run finished before it was killed: make it longer"
        child.kill()  # SIGKILL: nothing held in memory is written
        killed_at = time.time()
        child.join()
        saved = load_checkpoint(last)
        slowest_epoch = max(r["epoch_time"] for r in saved["history"]["rows"])
        lost = killed_at - last.stat().st_mtime
        assert lost <= EVERY_S + slowest_epoch + SLACK_S, (lost, slowest_epoch)
        positions.append(int(saved["epoch"]))
    assert positions == sorted(positions) and len(set(positions)) == KILLS  # moved on each time

    assert run is not None
    want = load_checkpoint(tmp_path / "ref" / next((tmp_path / "ref").glob("2*")).name
                           / "checkpoints" / "last.pt")  # fmt: skip
    got = load_checkpoint(run / "checkpoints" / "last.pt")
    assert got["epoch"] == want["epoch"] == CONFIG["train"]["epochs"]
    for key, tensor in want["model"].items():
        assert torch.equal(tensor, got["model"][key]), key
    drop = ("epoch_time",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in got["history"]["rows"]] == [
        {k: v for k, v in r.items() if k not in drop} for r in want["history"]["rows"]
    ]
    with RunStore(default_store_url(out)) as store:
        record = store.get_run(run.name)
        assert record.status == "completed" and record.epochs_done == CONFIG["train"]["epochs"]
        assert len(store.metrics(run.name)) == CONFIG["train"]["epochs"]
