"""Every file in examples/ works as it is: each run config trains (one epoch here) and records
its run, each search space parses against the config it names, and every example file a
docstring of skier names exists."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from skier.config import load_config
from skier.config.search import load_space
from skier.runner import run_training

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CONFIGS = sorted(p for p in EXAMPLES.glob("*.yaml") if not p.name.startswith("space_"))
SPACES = sorted(EXAMPLES.glob("space_*.yaml"))
SCRIPTS = sorted(EXAMPLES.glob("*.py"))


def test_the_examples_are_there() -> None:
    assert len(CONFIGS) >= 20 and len(SPACES) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_example_config_trains(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A short version: one epoch (the schedules' own lengths are left as the file says).
    overrides = ["train.epochs=1"]
    if load_config(path).data.name == "image_folder":  # its folder is made by a script
        folder = _make_image_folder()(tmp_path / "images", per_class=20)
        overrides.append(f"data.path={folder}")
    if load_config(path).data.name == "dataset":  # its module is in examples/, as its doc says
        monkeypatch.syspath_prepend(str(EXAMPLES))
        overrides.append(f"data.dataset_kwargs.root={tmp_path / 'files'}")
    config = load_config(path, overrides)
    outcome = run_training(
        config, base_dir=path.parent, out_dir=tmp_path / "runs", progress=False,
        store_url=f"sqlite:///{tmp_path / 'skier.db'}",
    )  # fmt: skip
    assert outcome.result.epochs_done == 1
    assert (outcome.run_dir / "config.yaml").is_file()
    assert (outcome.run_dir / "report.html").is_file()


def _make_image_folder() -> Callable[..., Path]:
    """``write_digit_images`` of examples/make_image_folder.py, the script that makes the folder
    examples/image_folder.yaml reads."""
    spec = importlib.util.spec_from_file_location(
        "make_image_folder", EXAMPLES / "make_image_folder.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_digit_images  # type: ignore[no-any-return]


@pytest.mark.slow
@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_every_example_script_runs(path: Path, tmp_path: Path) -> None:
    # Each script takes --quick (a short version) and --record DIR (its fit becomes a run).
    proc = subprocess.run(
        [sys.executable, str(path), "--quick", "--record", str(tmp_path / "runs")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "recorded as run" in proc.stdout
    assert (tmp_path / "runs" / "skier.db").is_file()


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_every_example_space_parses_against_its_config(path: Path) -> None:
    named = re.findall(r"examples/([\w.-]+\.yaml)", path.read_text())
    bases = [EXAMPLES / n for n in named if not n.startswith("space_")]
    assert bases, f"{path.name} names no config it is a space for"
    space = load_space(path, base=load_config(bases[0]))
    assert space.params


def test_every_example_a_docstring_names_exists() -> None:
    missing = []
    for source in sorted((ROOT / "src" / "skier").rglob("*.py")):
        for name in re.findall(r"examples/([\w.-]+\.(?:yaml|py|csv))", source.read_text()):
            if not (EXAMPLES / name).exists() and not (EXAMPLES / "data" / name).exists():
                missing.append(f"{source.relative_to(ROOT)} names examples/{name}")
    assert not missing, "\n".join(missing)
