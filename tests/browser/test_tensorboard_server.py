"""The real TensorBoard server serves a run skier's TensorBoardLogger wrote: started as a
subprocess on 127.0.0.1 (a free port it picks itself), asked over its own HTTP API (the one its
web page reads) until the run, its scalar tags and its figure are listed, then stopped.

No browser is needed; where the server cannot start here the test is skipped with its reason.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import torch

from skier.train import TensorBoardLogger, fit

pytest.importorskip("tensorboard")

pytestmark = pytest.mark.slow

_URL = re.compile(r"http://127\.0\.0\.1:(\d+)/")


def _get(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return json.loads(response.read().decode())


def _start(logdir: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``tensorboard --logdir`` on 127.0.0.1 and port 0 (it picks a free one and prints it)."""
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
               "--host", "127.0.0.1", "--port", "0", "--load_fast", "false"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = _URL.search(log.read_text(errors="replace"))
        if found:
            return proc, f"http://127.0.0.1:{found.group(1)}"
        if proc.poll() is not None:
            last = (log.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"the tensorboard server could not start here: {last}")
        time.sleep(0.2)
    _stop(proc)
    pytest.skip("the tensorboard server did not say where it listens within 60 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


def test_the_tensorboard_server_lists_the_run_its_scalars_and_figures(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    logdir = tmp_path / "runs"
    logger = TensorBoardLogger(logdir / "run1", params={"optim.lr": 0.1}, finish_at_fit_end=False)
    model = torch.nn.Linear(4, 2)
    fit(model, (x, y), (x, y), optimizer="sgd", lr=0.1, epochs=2, batch_size=32,
        device="cpu", callbacks=[logger])  # fmt: skip
    figure, axes = plt.subplots(figsize=(2, 2))
    axes.plot([1, 2], [2, 1])
    figure.savefig(tmp_path / "curve.png")
    plt.close(figure)
    logger.finish("completed", artifacts=[tmp_path / "curve.png"])

    proc, base = _start(logdir, tmp_path / "tensorboard.log")
    try:
        wanted = {"loss/train", "loss/val"}
        deadline, runs, tags, images = time.monotonic() + 60, [], {}, {}
        while time.monotonic() < deadline:
            try:
                runs = _get(base, "/data/runs")
                tags = _get(base, "/data/plugin/scalars/tags")
                images = _get(base, "/data/plugin/images/tags")
            except (urllib.error.URLError, ConnectionError):
                pass  # not serving yet
            if "run1" in runs and wanted <= set(tags.get("run1", {})) and images.get("run1"):
                break
            time.sleep(0.5)
        assert runs == ["run1"]
        assert wanted <= set(tags["run1"])
        assert "figures/curve" in images["run1"]
        points = _get(base, "/data/plugin/scalars/scalars?run=run1&tag=loss/train")
        assert [p[1] for p in points] == [1, 2]  # [wall_time, step, value] per epoch
    finally:
        _stop(proc)
