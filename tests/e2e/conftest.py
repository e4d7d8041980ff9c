from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def skier_cli(tmp_path: Path) -> Runner:
    """Run ``python -m skier ARGS`` in ``tmp_path`` the way a user's shell would."""

    def run(
        *args: str, cwd: Path | None = None, timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CI": "true", "PYTHONWARNINGS": "error"}
        return subprocess.run(
            [sys.executable, "-m", "skier", *args],
            cwd=cwd or tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
