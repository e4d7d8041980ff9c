"""The HTML report in headless Chromium, for real runs: a training run looked at by every
diagnostic (LR range test, landscape, the line from its initial weights, sharpness), a
cross-validation with its refit and a search with its trials. No console errors,
every image loaded, and a run named <script>alert(1)</script> shows as text."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from skier.record import RunStore, default_store_url

from .conftest import console_errors, images_loaded, no_alert

pytestmark = pytest.mark.slow
EVIL = "<script>alert(1)</script>"
PLAIN = {
    "data": {"name": "synthetic", "samples": 240, "features": 6, "classes": 3},
    "model": {"name": "mlp", "hidden_sizes": [8]},
    "train": {"epochs": 3, "batch_size": 32},
    "schedule": {"name": "cosine"},
    "diagnostics": {"gradient_flow_every": 2},
    "record": {"name": EVIL},
}


@dataclass
class Runs:
    root: Path
    train: str
    cv: str
    refit: str
    tune: str
    trial: str


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    from skier.config import config_from_mapping
    from skier.config.search import CrossValidationConfig, TuneConfig, parse_space
    from skier.runner import run_training
    from skier.runner.cv import run_cv
    from skier.runner.diagnose import load_source, run_landscape, run_lr_find, run_sharpness
    from skier.runner.tune import run_tune

    root = tmp_path_factory.mktemp("report") / "runs"
    config = config_from_mapping(PLAIN, "test config")
    trained = run_training(config, out_dir=root, progress=False)
    source = load_source(trained.run_dir)
    run_lr_find(source, {"num_steps": 20})
    run_landscape(source, {"dims": 1, "points": 5})
    run_landscape(source, {"dims": 1, "points": 5, "direction": "init"})
    run_sharpness(source, {"top_k": 1, "max_iterations": 10, "trace": False})
    cv = run_cv(config, cv=CrossValidationConfig(folds=2, workers=1, refit=True), out_dir=root)
    space = parse_space({"optim.lr": {"type": "categorical", "choices": [0.01, 0.1]}}, base=config)
    tune = run_tune(config, space, tune=TuneConfig(method="grid", workers=1), out_dir=root)
    assert cv.refit is not None
    trial = tune.summary["trials"][0]["run_id"]
    return Runs(root, trained.run_id, cv.run_id, cv.refit["run_id"], tune.run_id, trial)


def _report(runs: Runs, run_id: str, tmp_path: Path) -> Path:
    from skier.report import write_run_report

    with RunStore(default_store_url(runs.root)) as store:
        return write_run_report(run_id, store=store, out=tmp_path / f"{run_id}.html")


def _sections(driver) -> list[str]:  # type: ignore[no-untyped-def]
    return list(
        driver.execute_script("return [...document.querySelectorAll('h2')].map(h => h.textContent)")
    )


def _check_page(driver, path: Path) -> None:  # type: ignore[no-untyped-def]
    console_errors(driver)  # drop what earlier pages logged
    driver.get(path.as_uri())
    assert no_alert(driver), "a script from a user string ran"
    widths = images_loaded(driver)
    assert widths and all(w > 0 for w in widths), widths
    assert console_errors(driver) == []


def test_training_run_with_every_diagnostic(
    browser, runs: Runs, tmp_path: Path, artifacts: Path
) -> None:  # type: ignore[no-untyped-def]
    path = _report(runs, runs.train, tmp_path)
    _check_page(browser, path)
    assert browser.find_element("tag name", "h1").text == EVIL
    assert browser.execute_script("return document.scripts.length") == 0
    expected = ["Summary", "Metrics", "Learning curves", "Learning-rate schedule",
                "Gradient flow", "LR range test", "Loss landscapes", "Connectivity",
                "Sharpness", "Runs that belong to it", "Epochs", "Config", "Files"]  # fmt: skip
    assert _sections(browser) == expected
    browser.save_screenshot(str(artifacts / "report.png"))
    # The run's own report.html, rewritten by the diagnostics, carries the same sections.
    _check_page(browser, runs.root / runs.train / "report.html")
    assert "Sharpness" in _sections(browser) and "Connectivity" in _sections(browser)


def test_cv_and_search_reports(browser, runs: Runs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _check_page(browser, _report(runs, runs.cv, tmp_path))
    assert "Cross-validation" in _sections(browser)
    _check_page(browser, _report(runs, runs.refit, tmp_path))
    assert "Cross-validation" in _sections(browser)  # the CV it is the refit of
    _check_page(browser, _report(runs, runs.tune, tmp_path))
    assert "Search" in _sections(browser)
    _check_page(browser, _report(runs, runs.trial, tmp_path))
    assert "Search" in _sections(browser)  # the search it is a trial of


def test_comparison_report(browser, runs: Runs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from skier.report import write_run_report

    with RunStore(default_store_url(runs.root)) as store:
        path = write_run_report([runs.train, runs.refit], store=store, out=tmp_path / "c.html")
    _check_page(browser, path)
    assert _sections(browser)[:3] == ["Runs", "Curves", "Config differences"]
