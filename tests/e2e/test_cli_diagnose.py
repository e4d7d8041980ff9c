"""`skier lr-find`, `skier landscape`, `skier sharpness` and `optim.lr: auto` as a user runs them:
from a config or a finished run, each writing a run directory, a store row and figures in the
reports; wrong input refused with one line and exit status 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from skier.record import RunStore, default_store_url

Runner = Any
pytestmark = pytest.mark.slow

SMALL = [
    "--set", "model.hidden_sizes=[32]",
    "--set", "train.epochs=2",
]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "CI": "true", "PYTHONWARNINGS": "error"}


def _skier(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skier", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished digits run (a small MLP, 2 epochs) the diagnostics look at."""
    home = tmp_path_factory.mktemp("diag")
    proc = _skier(home, "train", *SMALL, "--out", "runs")
    assert proc.returncode == 0, proc.stderr
    (run,) = [p for p in (home / "runs").iterdir() if p.is_dir()]
    return run


def _line(stdout: str, prefix: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith(prefix))


def _run_dir(stdout: str) -> Path:
    return Path(_line(stdout, "run directory: ").removeprefix("run directory: "))


def test_lr_find_on_a_config_records_the_curve_and_suggestions(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"model": {"hidden_sizes": [32]}}))
    proc = _skier(tmp_path, "lr-find", str(config), "--steps", "40", "--out", "runs")
    assert proc.returncode == 0, proc.stderr
    assert _line(proc.stdout, "lr-find: valley ")
    run = tmp_path / _run_dir(proc.stdout)
    result = json.loads((run / "result.json").read_text())
    assert result["kind"] == "lr_find"
    found = result["result"]
    assert len(found["lrs"]) <= 40 and found["suggestion"] == "valley"
    assert result["summary"]["lr"] == found["lr"] > 0
    assert (run / "lr_find.png").read_bytes().startswith(b"\x89PNG")
    assert (run / "lr_find.csv").read_text().startswith("step,lr,loss,smoothed_loss\n")
    assert "LR range test" in (run / "report.html").read_text()
    with RunStore(default_store_url(tmp_path / "runs")) as store:
        record = store.get_run(run.name)
    assert record.kind == "lr_find" and record.status == "completed"
    assert record.summary["suggestion"] == "valley"


def test_optim_lr_auto_runs_the_test_then_trains_with_its_choice(tmp_path: Path) -> None:
    proc = _skier(tmp_path, "train", *SMALL, "--set", "optim.lr=auto", "--out", "runs")
    assert proc.returncode == 0, proc.stderr
    chosen = float(_line(proc.stdout, "lr-find: optim.lr = ").split()[3])
    run = tmp_path / _run_dir(proc.stdout)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optim"]["lr"] == pytest.approx(chosen, rel=1e-2)  # what ran, as a number
    result = json.loads((run / "result.json").read_text())
    assert result["lr_find"]["lr"] == pytest.approx(saved["optim"]["lr"])
    lrs = (run / "lr.csv").read_text().splitlines()[1:]
    assert float(lrs[0].split(",")[1]) == pytest.approx(saved["optim"]["lr"])
    assert "LR range test (optim.lr: auto)" in (run / "report.html").read_text()


def test_landscape_2d_with_mini_batches_on_a_finished_run(tmp_path: Path, trained: Path) -> None:
    proc = _skier(
        tmp_path, "landscape", str(trained), "--points", "7", "--per-batch",
        "--batch-size", "32", "--out", "diag",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert _line(proc.stdout, "landscape: 49 points in ")  # 7 x 7, 0 on the grid
    run = tmp_path / _run_dir(proc.stdout)
    rows = (run / "landscape.csv").read_text().splitlines()
    assert rows[0] == "alpha,beta,loss,error,batch1_loss,batch2_loss" and len(rows) == 50
    for name in ("landscape.png", "landscape_log.png", "landscape_batches.png"):
        assert (run / name).read_bytes().startswith(b"\x89PNG")
    assert not (run / "partial.json").exists()
    settings = yaml.safe_load((run / "landscape.yaml").read_text())
    assert settings["points"] == 7 and settings["per_batch"] is True
    assert settings["source"] == str(trained.resolve())


def test_landscape_figures_join_the_source_runs_report(tmp_path: Path, trained: Path) -> None:
    # Written beside the source run (no --out): its report gains a section for it.
    proc = _skier(tmp_path, "landscape", str(trained), "--direction", "init", "--points", "11")
    assert proc.returncode == 0, proc.stderr
    run = _run_dir(proc.stdout)
    assert run.parent == trained.parent
    result = json.loads((run / "result.json").read_text())
    assert result["result"]["labels"] == ["initial", "final"]
    assert result["result"]["alphas"][0] == -0.25
    report = (trained / "report.html").read_text()
    assert f"landscape {run.name}: landscape" in report
    with RunStore(default_store_url(trained.parent)) as store:
        record = store.get_run(run.name)
        assert record.parent_id == trained.name and record.kind == "landscape"


def test_interpolation_between_two_runs(tmp_path: Path, trained: Path) -> None:
    other = _skier(tmp_path, "train", *SMALL, "--set", "train.seed=1", "--out", "runs")
    assert other.returncode == 0, other.stderr
    second = tmp_path / _run_dir(other.stdout)
    proc = _skier(
        tmp_path, "landscape", str(trained), "--to", str(second), "--points", "9",
        "--out", "diag",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / _run_dir(proc.stdout) / "result.json").read_text())
    curve = result["result"]["surface"]["loss"]
    assert result["result"]["direction"] == "run" and len(curve) == 11  # 9 + alpha 0 and 1
    # Two minima found from different seeds: a barrier between them (higher loss mid-way).
    alphas = result["result"]["alphas"]
    ends = [curve[alphas.index(0.0)], curve[alphas.index(1.0)]]
    assert max(curve) > max(ends)


def test_sharpness_on_a_finished_run(tmp_path: Path, trained: Path) -> None:
    proc = _skier(
        tmp_path, "sharpness", str(trained), "--top-k", "2", "--subset", "200",
        "--trace-samples", "20", "--trace-basis", "5", "--trace-method", "hutchinson",
        "--out", "diag",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    line = _line(proc.stdout, "sharpness: top eigenvalues ")
    run = tmp_path / _run_dir(proc.stdout)
    summary = json.loads((run / "result.json").read_text())["summary"]
    assert summary["examples"] == 200 and len(summary["eigenvalues"]) == 2
    # Lanczos's basis for 2 eigenvalues is at least 5 vectors: all of it is deflated.
    assert summary["trace_basis"] >= 5 and summary["trace_std_error"] > 0
    assert summary["trace_method"] == "hutchinson"
    assert summary["top_eigenvalue"] > 0 and f"{summary['top_eigenvalue']:.4g}" in line
    assert (run / "hessian_spectrum.png").read_bytes().startswith(b"\x89PNG")
    # The run's MLP is ReLU, piecewise-linear in each weight: auto takes the exact trace,
    # within the estimate's error.
    exact = _skier(tmp_path, "sharpness", str(trained), "--subset", "200", "--out", "diag")
    assert exact.returncode == 0, exact.stderr
    assert "(exact)" in _line(exact.stdout, "sharpness: top eigenvalues ")
    found = json.loads((tmp_path / _run_dir(exact.stdout) / "result.json").read_text())["summary"]
    assert found["trace_method"] == "exact" and found["trace_std_error"] == 0.0
    assert abs(found["trace"] - summary["trace"]) < 5 * summary["trace_std_error"]


def test_an_exact_trace_the_model_does_not_allow_is_refused_before_the_run(tmp_path: Path) -> None:
    tanh = _skier(
        tmp_path, "train", *SMALL, "--set", "model.activation=tanh", "--set", "train.epochs=1",
        "--out", "runs",
    )  # fmt: skip
    assert tanh.returncode == 0, tanh.stderr
    run = str(tmp_path / _run_dir(tanh.stdout))
    store = RunStore(f"sqlite:///{tmp_path / 'runs.db'}")
    before = len(store.list_runs())
    store.close()
    proc = _skier(tmp_path, "sharpness", run, "--trace-method", "exact", "--out", "diag",
                  "--store", f"sqlite:///{tmp_path / 'runs.db'}")  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("skier: error: ") and "Traceback" not in proc.stderr
    assert "sharpness.trace_method" in proc.stderr and "Tanh" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    # Refused before anything was made: no sharpness directory, no store row.
    assert not (tmp_path / "diag").exists()
    store = RunStore(f"sqlite:///{tmp_path / 'runs.db'}")
    assert len(store.list_runs()) == before
    store.close()


def test_a_stopped_landscape_resumes_where_it_stopped(tmp_path: Path, trained: Path) -> None:
    args = ["landscape", str(trained), "--points", "41", "--out", "diag"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "skier", *args],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    partial: list[Path] = []
    while time.monotonic() < deadline and not partial and proc.poll() is None:
        partial = list((tmp_path / "diag").glob("*/partial.json"))
        time.sleep(0.05)
    assert partial, "the grid finished or failed before a row was saved"
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    run = partial[0].parent
    done_before = json.loads(partial[0].read_text())["rows_done"]
    assert 1 <= done_before < 41
    resumed = _skier(tmp_path, "landscape", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert _run_dir(resumed.stdout).name == run.name
    full = _skier(tmp_path, "landscape", str(trained), "--points", "41", "--out", "full")
    assert full.returncode == 0, full.stderr
    full_csv = (tmp_path / _run_dir(full.stdout) / "landscape.csv").read_text()
    assert (run / "landscape.csv").read_text() == full_csv
    with RunStore(default_store_url(tmp_path / "diag")) as store:
        assert store.get_run(run.name).status == "completed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["landscape", "nowhere"], "source must be a run directory or a config file"),
        (["landscape", "{run}", "--range", "1,-1"], "landscape.xrange must be [low, high]"),
        (["landscape", "{run}", "--range", "a"], "--range must be LOW,HIGH"),
        (["landscape", "{run}", "--dims", "2", "--direction", "init"], "landscape.dims must be 1"),
        (["sharpness", "{run}", "--top-k", "0"], "sharpness.top_k must be greater than or equal"),
        (["lr-find", "--end-lr", "1e-9"], "lr_find.end_lr must be greater than start_lr"),
        (["landscape", "--resume", "{run}"], "must be a landscape run"),
    ],
)
def test_wrong_input_is_one_line_and_exit_2(
    tmp_path: Path, trained: Path, args: list[str], message: str
) -> None:
    proc = _skier(tmp_path, *(a.replace("{run}", str(trained)) for a in args))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("skier: error: ")


def test_connect_trains_two_endpoints_from_a_config_and_lowers_the_barrier(tmp_path: Path) -> None:
    config = tmp_path / "pair.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"hidden_sizes": [32, 32]},
                "optim": {"name": "adam", "lr": 0.003},
                "train": {"epochs": 15},
            }
        )
    )
    proc = _skier(
        tmp_path, "connect", str(config), "--epochs", "10", "--points", "11",
        "--plane-points", "5", "--ensemble-points", "3", "-q",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("training endpoint") == 2
    run = tmp_path / _run_dir(proc.stdout)
    result = json.loads((run / "result.json").read_text())
    summary = result["summary"]
    assert summary["line_train_loss_barrier"] > 0
    assert summary["curve_train_loss_barrier"] < summary["line_train_loss_barrier"]
    assert summary["run_a"] != summary["run_b"]
    rows = (run / "connectivity.csv").read_text().splitlines()
    assert rows[0].startswith("t,line_train_loss,") and len(rows) == 12
    assert (run / "connectivity.png").read_bytes().startswith(b"\x89PNG")
    assert (run / "curve.pt").is_file()
    with RunStore(default_store_url(run.parent)) as store:
        record = store.get_run(run.name)
        assert record.kind == "connect" and record.parent_id == summary["run_a"]
        assert record.summary["barrier_reduction"] == pytest.approx(summary["barrier_reduction"])


def test_connect_refuses_runs_of_different_models(tmp_path: Path, trained: Path) -> None:
    other = _skier(
        tmp_path, "train", "--set", "model.hidden_sizes=[16]", "--set", "train.epochs=1",
        "--out", "runs",
    )  # fmt: skip
    assert other.returncode == 0, other.stderr
    proc = _skier(tmp_path, "connect", str(trained), str(tmp_path / _run_dir(other.stdout)))
    assert proc.returncode == 2
    assert "the two runs must have the same model config" in proc.stderr
    one = _skier(tmp_path, "connect", str(trained))
    assert one.returncode == 2 and "Add the second run directory" in one.stderr
