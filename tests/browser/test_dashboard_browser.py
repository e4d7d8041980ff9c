"""``skier serve`` in headless Chromium while ``skier train`` runs: the curve grows without a
reload (each new epoch on screen within 2 s of reaching the store), ticking a second run
overlays both curves, a run named <script>alert(1)</script> shows as text, and a screenshot is
saved as a test artifact."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skier.record import RunStore, default_store_url

from .conftest import console_errors, no_alert

pytestmark = pytest.mark.slow
EVIL = "<script>alert(1)</script>"
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CI": "true"}
    with log.open("wb") as out:  # a file, not a pipe: a chatty child never blocks on it
        return subprocess.Popen(
            [sys.executable, "-m", "skier", *args], cwd=cwd, env=env, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(what: str, check: Any, timeout: float = 60.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A runs folder with one finished run named <script>alert(1)</script>."""
    with RunStore(default_store_url(tmp_path / "runs")) as store:
        run_id = store.create_run(EVIL, {"optim": {"lr": 0.5}}, None)
        for epoch in range(1, 9):
            store.log_epoch(run_id, epoch, {"loss": 2.0 / epoch, "val_loss": 2.2 / epoch})
        store.finish_run(run_id, "completed", best_epoch=8, monitor="val_loss", best_value=0.275)
    yield tmp_path


def _points(driver: Any) -> dict[str, int]:
    found = driver.execute_script(
        "return [...document.querySelectorAll('#chart polyline')]"
        ".map(p => [p.dataset.run, Number(p.dataset.points)])"
    )
    return {run: n for run, n in found}


def test_live_curve_and_comparison(browser: Any, home: Path, artifacts: Path) -> None:
    port = _free_port()
    server = _start(["serve", "--dir", "runs", "--port", str(port)], home, home / "serve.log")
    trainer = None
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait("the server", lambda: _answers(port), timeout=30)
        trainer = _start(
            ["train", "--out", "runs", "--set", "train.epochs=5000", "--set", "train.batch_size=32",
             "--set", "early_stopping.enabled=false", "--set", "checkpoint.enabled=false",
             "--set", "record.name=live-run", "-q"],
            home, home / "train.log",
        )  # fmt: skip
        with RunStore(default_store_url(home / "runs")) as store:
            live = _wait(
                "the training run's second epoch in the store",
                lambda: next(
                    (r for r in store.list_runs(kind="train")
                     if r.name == "live-run" and (r.epochs_done or 0) >= 2), None),
                timeout=90,
            )  # fmt: skip
            console_errors(browser)  # drop what earlier pages logged
            browser.get(url)
            # The newest training run is shown by itself: its curve grows with no reload.
            _wait("the live curve", lambda: _points(browser).get(live.id, 0) >= 2, timeout=10)
            delays = []
            for _ in range(3):
                done = store.get_run(live.id).epochs_done or 0
                seen_in_store = _wait(
                    "a new epoch", lambda d=done: (store.get_run(live.id).epochs_done or 0) > d,
                    timeout=30, every=0.02,
                )  # fmt: skip
                assert seen_in_store
                target = store.get_run(live.id).epochs_done or 0
                start = time.monotonic()
                _wait(
                    f"epoch {target} on screen",
                    lambda t=target: _points(browser).get(live.id, 0) >= t,
                    timeout=5, every=0.05,
                )  # fmt: skip
                delays.append(time.monotonic() - start)
            assert max(delays) < 2.0, f"seconds from store to screen: {delays}"
            assert browser.execute_script("return performance.navigation.type") == 0  # no reload

            # Tick the finished run: both curves in one chart.
            row = browser.find_element("css selector", "#runs tbody tr:last-child")
            assert row.find_element("css selector", "td.name").text == EVIL  # text, not markup
            row.find_element("css selector", "input.pick").click()
            both = _wait("two curves", lambda: len(_points(browser)) == 2 and _points(browser))
            assert live.id in both and min(both.values()) >= 2
            legend = browser.find_element("id", "legend").text
            assert EVIL in legend and "live-run" in legend
            assert no_alert(browser)
            assert console_errors(browser) == []
            browser.save_screenshot(str(artifacts / "dashboard.png"))
            if os.environ.get("SKIER_SCREENSHOT"):  # refresh the README's picture on demand
                browser.save_screenshot(os.environ["SKIER_SCREENSHOT"])
            # The report of the finished run opens from its link.
            finished = browser.find_element("css selector", "#runs tbody tr:last-child a")
            browser.get(finished.get_attribute("href"))
            assert browser.find_element("tag name", "h1").text == EVIL
            assert console_errors(browser) == [] and no_alert(browser)
    finally:
        browser.get("about:blank")  # stop polling before the server goes
        console_errors(browser)
        if trainer is not None:
            _stop(trainer)
        _stop(server)
    assert "skier dashboard: http://127.0.0.1:" in (home / "serve.log").read_text()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
