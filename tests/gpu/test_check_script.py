"""bench/gpu/check.sh checked on the CPU: valid bash, W1's Python part on the CPU (fast), and the
whole script's dry run (slow): the cuda tests are collected and skip with their reason, W1 runs,
summary.json says so."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "bench" / "gpu" / "check.sh"
W1 = ROOT / "bench" / "gpu" / "w1.py"


def _w1() -> ModuleType:
    spec = importlib.util.spec_from_file_location("skier_bench_gpu_w1", W1)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_script_is_valid_bash() -> None:
    done = subprocess.run(["bash", "-n", str(CHECK)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    if shutil.which("shellcheck"):
        lint = subprocess.run(["shellcheck", "-S", "warning", str(CHECK)], capture_output=True,
                              text=True)  # fmt: skip
        assert lint.returncode == 0, lint.stdout
    usage = subprocess.run(["bash", str(CHECK), "--bogus"], capture_output=True, text=True)
    assert usage.returncode == 2 and "unknown option --bogus" in usage.stderr


def test_w1_dry_run_on_the_cpu_writes_its_json(tmp_path: Path) -> None:
    assert _w1().main(["--out", str(tmp_path), "--dry-run", "--rounds", "1"]) == 0
    record = json.loads((tmp_path / "w1.json").read_text())
    assert record["dry_run"] is True and record["device"] == "cpu"
    assert record["workload"] == "W1" and record["batch"] == 128 and record["examples"] == 1960
    assert set(record["variants"]) == {"loop_b", "skier", "skier_nondet"}
    assert record["variants"]["loop_b"]["ratio_to_loop_b"] == 1.0
    for found in record["variants"].values():
        assert found["median_epoch_s"] > 0 and len(found["calls"]) == 1
        losses = found["calls"][0]["losses"]
        assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0] < 2.5
    # the same data, weights and permutation: skier and the plain loop train the same run
    skier, loop = (record["variants"][v]["final_loss"] for v in ("skier", "loop_b"))
    assert skier == pytest.approx(loop, rel=1e-3)
    assert record["skier_over_loop_b"] == record["variants"]["skier"]["ratio_to_loop_b"]


@pytest.mark.slow
def test_the_whole_check_runs_dry_on_the_cpu(tmp_path: Path) -> None:
    path = f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"), "PYTHONPATH": path}
    done = subprocess.run(["bash", str(CHECK), "--dry-run"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["dry_run"] is True and summary["pytest_returncode"] == 0
    tests = summary["tests"]
    assert len(tests) >= 6 and summary["counts"]["skipped"] == len(tests)
    assert all("needs a CUDA GPU" in t["detail"] for t in tests.values())
    assert summary["w1_returncode"] == 0 and summary["w1_skier_over_loop_b"] > 0
    assert (tmp_path / "out" / "w1.json").is_file() and summary["env"]["gpus"] == []
