"""The benchmark suite's smoke version: tiny sizes, the harness only (no timing assertions)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[1] / "bench" / "suite.py"


@pytest.mark.slow
def test_the_suite_runs_every_workload_and_variant(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    proc = subprocess.run(
        [sys.executable, str(SUITE), "--smoke", "--json", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    assert record["smoke"] is True and record["matmul_gflops"] > 0
    assert record["import_skier_s"] > 0 and record["skier_help_s"] > 0
    assert set(record["workloads"]) == {"W1", "W2", "W3", "W4"}
    for workload, variants in record["workloads"].items():
        assert set(variants) == {"loop_a", "loop_b", "skier"}, workload
        assert variants["loop_b"]["ratio_to_loop_b"] == 1.0
        for found in variants.values():
            assert found["median_epoch_s"] > 0 and found["peak_rss_mb"] > 0
            assert math.isfinite(found["final_loss"]) and found["final_loss"] < 10
    assert record["workloads"]["W1"]["skier"]["achieved_gflops"] > 0
