"""The dashboard app over HTTP (no browser): read-only, GET only, static files only from its own
folder, user strings as data never markup, and what a live view needs (epochs after N)."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Starlette's test client needs an HTTP client package (dev installs httpx2).
pytest.importorskip("starlette.testclient", reason="starlette's test client is not installed")

from starlette.testclient import TestClient

from skier.record import RunStore, default_store_url
from skier.report.dashboard import create_app

from .conftest import EVIL, Fabricated


@pytest.fixture
def client(fabricated: Fabricated) -> TestClient:
    hosts = ["127.0.0.1", "localhost", "testserver"]
    return TestClient(create_app(fabricated.url, allowed_hosts=hosts))


def test_index_and_its_own_script_and_style(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/static/dashboard.js"' in page.text and "http" not in page.text.lower()
    assert client.get("/static/dashboard.js").status_code == 200
    assert client.get("/static/dashboard.css").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/static/../dashboard.py",
        "/static/%2e%2e/dashboard.py",
        "/static/..%2fdashboard.py",
        "/static/%2e%2e%2f%2e%2e%2fviews.py",
        "/static//etc/passwd",
        "/static/../../../../etc/passwd",
    ],
)
def test_static_files_never_leave_their_folder(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404, (path, response.status_code)
    assert "import" not in response.text and "root:" not in response.text


def test_read_only_get_only(client: TestClient, fabricated: Fabricated) -> None:
    for method in ("post", "put", "delete", "patch"):
        assert getattr(client, method)("/api/runs").status_code == 405
    assert client.delete(f"/api/runs/{fabricated.train}/metrics").status_code == 405
    assert client.post("/static/dashboard.js").status_code == 405


def _status(port: int, host_header: str) -> int:
    """The status of ``GET /api/runs`` sent to 127.0.0.1:``port`` with this Host header."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/api/runs", headers={"Host": host_header})
        return conn.getresponse().status
    finally:
        conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_skier_serve_refuses_other_host_names_by_default(tmp_path: Path) -> None:
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 sends its own
    name as the Host. `skier serve` as a user starts it (no --host: 127.0.0.1), over HTTP."""
    pytest.importorskip("uvicorn", reason="uvicorn is not installed")
    with RunStore(default_store_url(tmp_path / "runs")) as store:
        store.create_run("one", {}, None)
    port, log = _free_port(), tmp_path / "serve.log"
    with log.open("wb") as out:  # a file, not a pipe: a chatty child never blocks on it
        server = subprocess.Popen(
            [sys.executable, "-m", "skier", "serve", "--dir", "runs", "--port", str(port)],
            cwd=tmp_path, env={**os.environ, "CI": "true"}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            with contextlib.suppress(OSError):
                if _status(port, f"127.0.0.1:{port}") == 200:
                    break
            assert time.monotonic() < deadline, "skier serve did not answer in 60 s"
            time.sleep(0.05)
        for foreign in (
            "evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil",
        ):  # fmt: skip
            assert _status(port, foreign) == 400, foreign
        for local in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
            assert _status(port, local) == 200, local
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert f"skier dashboard: http://127.0.0.1:{port}/" in log.read_text()


def test_runs_and_metrics_as_json(client: TestClient, fabricated: Fabricated) -> None:
    runs = client.get("/api/runs").json()["runs"]
    names = {r["id"]: r["name"] for r in runs}
    assert names[fabricated.train] == EVIL  # data, escaped by the page's textContent
    train = next(r for r in runs if r["id"] == fabricated.train)
    assert train["status"] == "stopped" and train["best_epoch"] == 5
    assert client.get("/api/runs?status=running").json()["runs"] == []
    assert client.get("/api/runs?status=bogus").status_code == 400
    assert client.get("/api/runs?limit=abc").status_code == 400
    data = client.get(f"/api/runs/{fabricated.train}/metrics").json()
    assert data["epochs"] == [1, 2, 3, 4, 5, 6] and len(data["metrics"]["val_loss"]) == 6
    later = client.get(f"/api/runs/{fabricated.train}/metrics?after=4").json()
    assert later["epochs"] == [5, 6]
    assert client.get("/api/runs/nope/metrics").status_code == 404


def test_new_epochs_show_up_on_the_next_poll(client: TestClient, fabricated: Fabricated) -> None:
    with RunStore(fabricated.url) as store:
        run_id = store.create_run("live", {}, None)
        store.log_epoch(run_id, 1, {"loss": 1.0})
        first = client.get(f"/api/runs/{run_id}/metrics").json()
        store.log_epoch(run_id, 2, {"loss": 0.5})
    second = client.get(f"/api/runs/{run_id}/metrics?after=1").json()
    assert first["epochs"] == [1] and second["epochs"] == [2]
    assert second["metrics"]["loss"] == [0.5] and second["run"]["epochs_done"] == 2


def test_report_page_of_a_run(client: TestClient, fabricated: Fabricated) -> None:
    page = client.get(f"/runs/{fabricated.train}/report")
    assert page.status_code == 200 and "Sharpness" in page.text
    assert "<script" not in page.text.lower()
    assert "script-src" not in page.headers["content-security-policy"]  # no scripts at all
    assert client.get("/runs/..%2f..%2fetc%2fpasswd/report").status_code == 404
    assert client.get("/runs/nope/report").status_code == 404
