"""The report reads what to show from the run kinds' registrations (skier.record.kinds): every
section a kind names exists and renders from a run directory of that kind, and a figure the kind
always writes that a finished run lacks is named on the page rather than left out silently."""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType

import pytest

from skier.errors import StoreError
from skier.record import RunDir, RunStore, default_store_url, new_run_id
from skier.record.kinds import RUN_KINDS, RunKind
from skier.report import load_view, render_run_report, sections, views
from skier.report.sections import SECTIONS, sections_of

from .conftest import _diagnostic, _training, png

WITH_SECTIONS = sorted(name for name, kind in RUN_KINDS.items() if kind.sections)


def _titles(page: str) -> list[str]:
    return re.findall(r'<section id="s\d+"><h2>([^<]*)</h2>', page)


def _search_run(store: RunStore, root: Path, kind: RunKind, figures: list[str]) -> str:
    run = RunDir.create(root, new_run_id())
    store.create_run(f"{kind.name} run", {}, run.path, kind=kind.name, run_id=run.run_id)
    for name in figures:
        (run.path / name).write_bytes(png())
    # the findings both searches write: the summary at the top level of result.json
    summary = {"folds": [], "trials": [], "direction": "minimize", "metric": "val_loss"}
    run.write_result({**summary, "run_id": run.run_id, "kind": kind.name, "status": "completed"})
    store.finish_run(run.run_id, "completed", summary=summary)
    return run.run_id


def _pages(root: Path, name: str, direction: str, figures: list[str]) -> list[str]:
    """The pages that may show a run of kind ``name``: its own, the run it looked at (a
    diagnostic) or a run that belongs to it (a search)."""
    kind = RUN_KINDS[name]
    with RunStore(default_store_url(root)) as store:
        if kind.role == "diagnostic":
            source = _training(store, root, "source", epochs=2, scale=1.0, lr=0.1)
            summary = {"direction": direction, "minimum": 0.1}
            run_id = _diagnostic(store, root, source, name, summary, figures)
            other = source
        else:
            run_id = _search_run(store, root, kind, figures)
            other = _training(store, root, "member", epochs=2, scale=1.0, lr=0.1,
                              kind="train", parent_id=run_id)  # fmt: skip
        return [render_run_report(load_view(r, store=store)) for r in (run_id, other)]


def test_every_section_a_kind_names_exists() -> None:
    assert WITH_SECTIONS  # the registry names sections at all, or this proves nothing
    for kind in RUN_KINDS.values():
        assert [s.name for s in sections_of(kind)] == list(kind.sections), kind.name


def test_a_kind_naming_an_unknown_section_is_an_error() -> None:
    kind = RunKind("prune", "Pruning", "diagnostic", sections=("sharpness", "prunning"))
    with pytest.raises(StoreError, match=r"report section must be one of lr_range_test, .*; "
                       r"got 'prunning' \(run kind 'prune'\)\. Add it to"):  # fmt: skip
        sections_of(kind)


@pytest.mark.parametrize("name", WITH_SECTIONS)
def test_every_kind_renders_its_sections(name: str, tmp_path: Path) -> None:
    kind = RUN_KINDS[name]
    shown: set[str] = set()
    for direction in ("random", "init"):  # a landscape goes by its direction
        pages = _pages(tmp_path / direction, name, direction, list(kind.figures))
        for page in pages:
            assert "missing:" not in page and "<script" not in page.lower()
            shown.update(_titles(page))
        # every figure the kind registers is embedded, in one of those pages
        assert sum(p.count('src="data:image/png') for p in pages) >= len(kind.figures)
    assert {s.title for s in sections_of(kind)} <= shown


@pytest.mark.parametrize(
    "name", [n for n in WITH_SECTIONS if RUN_KINDS[n].missing_figures([])]
)  # fmt: skip
def test_a_missing_registered_figure_is_named(name: str, tmp_path: Path) -> None:
    kind = RUN_KINDS[name]
    required = kind.missing_figures([])
    optional = [f for f in kind.figures if f not in required]
    pages = _pages(tmp_path, name, "random", optional)
    own = pages[0]
    assert f"missing: {', '.join(required)} (every {name} run writes it;" in own
    if kind.role == "diagnostic":  # and on the page of the run it looked at
        assert f"missing: {', '.join(required)}" in pages[1]


def test_a_new_diagnostic_is_one_registration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prune = RunKind("prune", "Pruning", "diagnostic", sections=("diagnostic",))
    kinds = MappingProxyType({**RUN_KINDS, "prune": prune})
    monkeypatch.setattr(sections, "RUN_KINDS", kinds)
    monkeypatch.setattr(views, "DIAGNOSTIC_KINDS", (*views.DIAGNOSTIC_KINDS, "prune"))
    root = tmp_path / "runs"
    with RunStore(default_store_url(root)) as store:
        source = _training(store, root, "source", epochs=2, scale=1.0, lr=0.1)
        run_id = _diagnostic(store, root, source, "prune", {"pruned": 0.5}, ["prune.png"])
        page = render_run_report(load_view(source, store=store))
        own = render_run_report(load_view(run_id, store=store))
    assert "Diagnostics" in _titles(page) and f"Pruning · run {run_id}" in page
    assert "Pruning" in _titles(own) and "Other figures" not in _titles(own)


def test_sections_are_in_page_order() -> None:
    assert list(SECTIONS) == ["lr_range_test", "loss_landscapes", "connectivity", "sharpness",
                              "diagnostic", "cross_validation", "search", "seeds"]  # fmt: skip
