"""The real TensorBoard server serves a run skier's TensorBoardLogger wrote: started as a
subprocess on 127.0.0.1 (a free port it picks itself), then asked two ways until the run, its
scalar tags and its figure are listed: over its own HTTP API (the one its web page reads), and
in its web page, rendered by headless Chromium (the Time Series dashboard's run list and the
cards its tag filter shows, read from the page's DOM).

Where the server cannot start here the tests are skipped with its reason; the page's test is
skipped where there is no browser (see ``conftest.py``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import torch

from skier.history import History
from skier.train import TensorBoardLogger, fit

pytest.importorskip("tensorboard")

pytestmark = pytest.mark.slow

_URL = re.compile(r"http://127\.0\.0\.1:(\d+)/")
T = TypeVar("T")


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


def _wait(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.25)
    raise AssertionError(f"{what}: not seen within {timeout:.0f} s")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, History]]:
    """A 2-epoch fit logged into ``runs/run1`` (with a figure), and the server's base URL."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tmp_path = tmp_path_factory.mktemp("tensorboard")
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    logdir = tmp_path / "runs"
    logger = TensorBoardLogger(logdir / "run1", params={"optim.lr": 0.1}, finish_at_fit_end=False)
    model = torch.nn.Linear(4, 2)
    result = fit(model, (x, y), (x, y), optimizer="sgd", lr=0.1, epochs=2, batch_size=32,
                 device="cpu", callbacks=[logger])  # fmt: skip
    figure, axes = plt.subplots(figsize=(2, 2))
    axes.plot([1, 2], [2, 1])
    figure.savefig(tmp_path / "curve.png")
    plt.close(figure)
    logger.finish("completed", artifacts=[tmp_path / "curve.png"])
    proc, base = _start(logdir, tmp_path / "tensorboard.log")
    try:
        yield base, result.history
    finally:
        _stop(proc)


def test_the_tensorboard_server_lists_the_run_its_scalars_and_figures(
    served: tuple[str, History],
) -> None:
    base, _ = served
    wanted = {"loss/train", "loss/val"}

    def listed() -> tuple[Any, Any, Any] | None:
        try:
            runs = _get(base, "/data/runs")
            tags = _get(base, "/data/plugin/scalars/tags")
            images = _get(base, "/data/plugin/images/tags")
        except (urllib.error.URLError, ConnectionError):
            return None  # not serving yet
        if "run1" in runs and wanted <= set(tags.get("run1", {})) and images.get("run1"):
            return runs, tags, images
        return None

    runs, tags, images = _wait("the run, its scalar tags and its figure", listed)
    assert runs == ["run1"]
    assert wanted <= set(tags["run1"])
    assert "figures/curve" in images["run1"]
    points = _get(base, "/data/plugin/scalars/scalars?run=run1&tag=loss/train")
    assert [p[1] for p in points] == [1, 2]  # [wall_time, step, value] per epoch


# The Time Series dashboard (an Angular app; no shadow roots on this path): the run list's
# rows, the filter inputs, and each scalar card's title (its tag) and its table of runs.
_CARDS = """return [...document.querySelectorAll('scalar-card-component')].map(card => {
  const tag = card.querySelector('tb-truncated-path.tag');
  return [tag ? tag.title : '', card.innerText.replace(/\\s+/g, ' ')];
});"""


def test_the_tensorboard_page_shows_the_run_and_its_scalars(
    served: tuple[str, History], browser: Any, artifacts: Path
) -> None:
    base, history = served
    try:
        browser.get(f"{base}/#timeseries")
        body = "return document.body.innerText"
        _wait("run1 in the page's run list", lambda: "run1" in browser.execute_script(body))
        tag_filter = _wait(
            "the tag filter",
            lambda: [
                e
                for e in browser.find_elements("css selector", "tb-filter-input input")
                if e.get_attribute("placeholder") == "Filter tags (regex)"
            ],
        )[0]
        tag_filter.send_keys("^loss/")  # only these cards, so both are on screen

        def loss_cards() -> dict[str, str] | None:
            cards = dict(browser.execute_script(_CARDS))
            shown = {k: v for k, v in cards.items() if k in ("loss/train", "loss/val")}
            # A card lists its runs once its chart has data: "run1 SMOOTHED VALUE STEP ...".
            return shown if len(shown) == 2 and all("run1" in v for v in shown.values()) else None

        cards = _wait("the loss/train and loss/val cards listing run1", loss_cards)
        for tag, key in (("loss/train", "loss"), ("loss/val", "val_loss")):
            row = re.search(r"run1 (\S+) (\S+) (\d+)", cards[tag])
            assert row is not None, cards[tag]
            # The last point: its value (as the page rounds it) and its step, the last epoch.
            assert float(row.group(2)) == pytest.approx(history.rows[-1][key], rel=1e-3)
            assert int(row.group(3)) == 2
        browser.save_screenshot(str(artifacts / "tensorboard.png"))
    except BaseException:
        browser.save_screenshot(str(artifacts / "tensorboard-failed.png"))
        raise
    finally:
        browser.get("about:blank")  # stop the page polling before the server goes
