"""`skier lesson list` and `skier lesson run` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

Runner = Any


def test_list_names_every_lesson_with_its_claim(skier_cli: Runner) -> None:
    proc = skier_cli("lesson", "list")
    assert proc.returncode == 0, proc.stderr
    assert " 1. downhill " in proc.stdout and "22. backprop " in proc.stdout


@pytest.mark.slow
def test_run_one_lesson_quick_writes_its_run(skier_cli: Runner, tmp_path: Path) -> None:
    proc = skier_cli(
        "lesson", "run", "backprop", "--quick", "--out", "runs", "--device", "cpu",
        "--threads", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Result: the claim held for 1 of 1 seed(s)" in proc.stdout
    assert "smallest margin +" in proc.stdout and "margin +" in proc.stdout
    (run,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    saved = json.loads((run / "result.json").read_text())
    assert saved["held"] is True and saved["threads"] == 2 and saved["margin"] > 0
    assert all(c["margin"] > 0 for c in saved["trials"][0]["checks"])
    page = (run / "report.html").read_text()
    assert "smallest margin over seeds" in page and "chain rule" in page  # every check
    assert "2 torch threads" in page
    assert any(p.suffix == ".png" for p in run.iterdir())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lesson", "run", "downhil"], "Did you mean 'downhill'"),
        (["lesson", "run"], "lesson run needs NAME or --all"),
        (["lesson", "run", "backprop", "--seeds", "a"], "--seeds must be comma-separated"),
        (["lesson", "run", "backprop", "--device", "gpu"], "--device must be cpu, cuda"),
        (["lesson", "run", "backprop", "--threads", "0"], "--threads must be at least 1"),
    ],
)
def test_wrong_input_exits_2(skier_cli: Runner, args: list[str], message: str) -> None:
    proc = skier_cli(*args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
