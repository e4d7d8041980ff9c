"""The report builder: every section appears when its data exists, and every user string is
escaped (a run named <script>alert(1)</script> shows as text)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from skier.record import RunStore
from skier.report import load_view, render_run_report, write_run_report
from skier.report.build import render_comparison_report

from .conftest import EVIL, Fabricated

ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def _sections(page: str) -> list[str]:
    return re.findall(r'<section id="s\d+"><h2>([^<]*)</h2>', page)


def _no_raw_script(page: str) -> None:
    assert "<script" not in page.lower(), "the report carries no script at all"
    assert ESCAPED in page


def test_a_run_looked_at_by_every_diagnostic_shows_every_section(fabricated: Fabricated) -> None:
    with RunStore(fabricated.url) as store:
        page = render_run_report(load_view(fabricated.train, store=store))
    assert _sections(page) == [
        "Summary", "Metrics", "Learning curves", "Learning-rate schedule", "Gradient flow",
        "LR range test", "Loss landscapes", "Connectivity", "Sharpness",
        "Runs that belong to it", "Epochs", "Config", "Files",
    ]  # fmt: skip
    _no_raw_script(page)
    # Figures are embedded, nothing is fetched: no http(s) or file references anywhere.
    assert page.count('src="data:image/png;base64,') >= 9
    assert not re.search(r'(src|href)="(?!data:|#)', page)
    for run_id in fabricated.diagnostics.values():
        assert run_id in page


def test_cv_and_search_sections_and_their_members(fabricated: Fabricated) -> None:
    with RunStore(fabricated.url) as store:
        cv = render_run_report(load_view(fabricated.cv, store=store))
        tune = render_run_report(load_view(fabricated.tune, store=store))
        fold = render_run_report(load_view(fabricated.fold, store=store))
        trial = render_run_report(load_view(fabricated.trial, store=store))
    assert "Cross-validation" in _sections(cv) and "Runs that belong to it" in _sections(cv)
    assert "2-fold" in cv and "mean ± std" in cv and fabricated.fold in cv and ESCAPED in cv
    assert "Search" in _sections(tune) and "study-1" in tune and "optim.lr=0.05" in tune
    assert ESCAPED in tune and "<script" not in tune.lower()
    # A fold and a trial say what they belong to, with its findings.
    assert "Cross-validation" in _sections(fold) and fabricated.cv in fold
    assert "Search" in _sections(trial) and fabricated.tune in trial


def test_a_bare_run_directory_needs_no_store(fabricated: Fabricated, tmp_path: Path) -> None:
    out = write_run_report(fabricated.root / fabricated.train, out=tmp_path / "r.html")
    page = out.read_text()
    # Without the store, the diagnostics are found beside the run by their result.json.
    assert {"LR range test", "Loss landscapes", "Connectivity", "Sharpness"} <= set(_sections(page))
    _no_raw_script(page)


def test_default_output_is_the_run_report(fabricated: Fabricated) -> None:
    with RunStore(fabricated.url) as store:
        path = write_run_report(fabricated.train, store=store)
    assert path == fabricated.root / fabricated.train / "report.html"


def test_comparison_overlays_curves_and_lists_config_differences(
    fabricated: Fabricated,
) -> None:
    with RunStore(fabricated.url) as store:
        views = [load_view(r, store=store) for r in (fabricated.train, fabricated.other)]
    page = render_comparison_report(views, metric="val_error")
    assert _sections(page)[:3] == ["Runs", "Curves", "Config differences"]
    assert "optim.lr" in page and "train.epochs" in page
    assert "other run" in page and ESCAPED in page and "<script" not in page.lower()


def test_unknown_run_is_one_line_error(fabricated: Fabricated) -> None:
    from skier.errors import StoreError

    with RunStore(fabricated.url) as store, pytest.raises(StoreError, match="got 'nope'"):
        load_view("nope", store=store)


def test_running_run_without_files_still_reports(tmp_path: Path) -> None:
    with RunStore(f"sqlite:///{tmp_path / 'skier.db'}") as store:
        run_id = store.create_run(EVIL, {"seed": 0}, None)
        store.log_epoch(run_id, 1, {"loss": 1.0, "val_loss": float("nan")})
        page = render_run_report(load_view(run_id, store=store))
    assert "running" in page and _sections(page)[:3] == ["Summary", "Metrics", "Learning curves"]
