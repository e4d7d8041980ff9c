"""``skier runs / show / compare / export / rm / report`` through ``python -m skier`` on two
real training runs, as a user runs them; bad input is one line and exit status 2."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _skier(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": "true", "PYTHONWARNINGS": "error"}
    return subprocess.run(
        [sys.executable, "-m", "skier", *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=240, input=stdin,
    )  # fmt: skip


@dataclass
class Home:
    path: Path
    fast: str
    slow: str


def _train(home: Path, name: str, **optim: float) -> str:
    """A real (small) training run, in this process: the verbs under test are the CLI's."""
    from skier.config import config_from_mapping
    from skier.runner import run_training

    plain = {
        "model": {"hidden_sizes": [16]},
        "train": {"epochs": 3},
        "checkpoint": {"enabled": False},
        "record": {"name": name},
        "optim": dict(optim),
    }
    outcome = run_training(config_from_mapping(plain, "test"), out_dir=home / "runs")
    return outcome.run_id


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    path = tmp_path_factory.mktemp("runs_cli")
    return Home(path, _train(path, "<b>fast</b>"), _train(path, "slow", lr=0.0001))


def _one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skier: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_runs_sorted_by_a_metric(home: Home) -> None:
    proc = _skier(home.path, "runs", "--sort", "val_loss")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[-1] == "val_loss"
    assert [line.split()[0] for line in lines[1:]] == [home.fast, home.slow]
    reverse = _skier(home.path, "runs", "--sort", "val_loss", "--reverse", "--limit", "1")
    assert [line.split()[0] for line in reverse.stdout.splitlines()[1:]] == [home.slow]
    accuracy = _skier(home.path, "runs", "--sort", "test_accuracy")  # higher first
    assert accuracy.stdout.splitlines()[1].split()[0] == home.fast
    assert _skier(home.path, "runs", "--status", "completed").stdout.count("completed") == 2
    typo = _skier(home.path, "runs", "--sort", "val_los")  # listed, with a note on stderr
    assert typo.returncode == 0 and "Traceback" not in typo.stderr
    assert "no run listed has a value of 'val_los'" in typo.stderr
    assert "Did you mean 'val_loss'?" in typo.stderr and "val_loss" in typo.stderr


def test_show_a_run_by_id_prefix(home: Home) -> None:
    proc = _skier(home.path, "show", home.fast[:-3])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith(f"run {home.fast} · <b>fast</b>")
    assert "status completed" in out and "final metrics (epoch 3): loss " in out
    assert "test: test_loss " in out and "files:" in out and "metrics.csv" in out
    assert "config:" in out and "hidden_sizes:" in out
    by_name = _skier(home.path, "show", "slow", "--no-config")
    assert by_name.returncode == 0 and home.slow in by_name.stdout
    assert "config:" not in by_name.stdout


def test_compare_overlays_and_lists_differences(home: Home) -> None:
    proc = _skier(home.path, "compare", home.fast, home.slow, "--metric", "val_loss")
    assert proc.returncode == 0, proc.stderr
    assert "config differences:" in proc.stdout and "optim.lr" in proc.stdout
    assert "record.name" in proc.stdout
    png = home.path / "compare.png"
    assert png.read_bytes().startswith(b"\x89PNG")
    _one_line_error(_skier(home.path, "compare", home.fast, "--metric", "val_los"),
                    "metric must be one the runs recorded", "Did you mean 'val_loss'")  # fmt: skip


def test_export_csv_and_json(home: Home) -> None:
    proc = _skier(home.path, "export", home.fast, home.slow, "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 6 and {r["run_id"] for r in rows} == {home.fast, home.slow}
    assert float(rows[0]["loss"]) > 0 and rows[0]["epoch"] == "1"
    out = home.path / "runs.json"
    proc = _skier(home.path, "export", home.fast, "--format", "json", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data[0]["name"] == "<b>fast</b>" and len(data[0]["metrics"]) == 3
    assert data[0]["config"]["train"]["epochs"] == 3
    bad = _skier(home.path, "export", home.fast, "--format", "xml")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_report_of_one_and_of_two_runs(home: Home) -> None:
    proc = _skier(home.path, "report", home.fast)
    assert proc.returncode == 0, proc.stderr
    page = (home.path / "runs" / home.fast / "report.html").read_text()
    assert "&lt;b&gt;fast&lt;/b&gt;" in page and "<b>fast" not in page
    assert "Learning-rate schedule" in page
    out = home.path / "both.html"
    proc = _skier(home.path, "report", home.fast, home.slow, "--out", str(out))
    assert proc.returncode == 0 and "Config differences" in out.read_text()


def test_unknown_runs_are_one_line_errors(home: Home) -> None:
    _one_line_error(_skier(home.path, "show", "nope"), "got 'nope'", "skier runs")
    _one_line_error(_skier(home.path, "report", "nope"), "got 'nope'")
    _one_line_error(_skier(home.path, "runs", "--status", "done"), "status must be one of")
    # An id prefix shared by both runs names no single run.
    common = ""
    for a, b in zip(home.fast, home.slow, strict=True):
        if a != b:
            break
        common += a
    if common:
        _one_line_error(_skier(home.path, "show", common), "one run")


def test_rm_asks_then_deletes_rows_and_folder(home: Home, tmp_path: Path) -> None:
    doomed = _train(home.path, "doomed")
    folder = home.path / "runs" / doomed
    assert folder.is_dir()
    no = _skier(home.path, "rm", doomed, stdin="n\n")
    assert no.returncode == 0 and "nothing deleted" in no.stdout and folder.is_dir()
    eof = _skier(home.path, "rm", doomed, stdin="")
    assert eof.returncode == 0 and "nothing deleted" in eof.stdout
    yes = _skier(home.path, "rm", doomed, stdin="y\n")
    assert yes.returncode == 0, yes.stderr
    assert "deleted 1 run(s) from the store, 1 run directories." in yes.stdout
    assert not folder.exists()
    assert doomed not in _skier(home.path, "runs").stdout
    _one_line_error(_skier(home.path, "rm", doomed, "--yes"), "got")
