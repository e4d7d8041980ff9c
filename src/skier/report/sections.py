"""The report sections that show a run kind's findings, by name.

A run kind names its sections in its registration (``skier.record.kinds``, ``sections``); the
report reads that, never the kind's name. A section shows the findings of every run whose kind
names it: on that run's own page (a cross-validation, a search), on the page of the run a
diagnostic looked at, and on the pages of a search's members (a fold, a trial, a refit). A new
diagnostic that names ``"diagnostic"`` is shown with no code here; one with a section of its own
adds a renderer to :data:`SECTIONS`. A kind that names a section missing here is an error, and
a finished run that lacks a figure its kind always writes says so on the page.

>>> [s.title for s in sections_of(RUN_KINDS["landscape"])]
['Loss landscapes', 'Connectivity']
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from skier.errors import StoreError
from skier.record import RunFiles
from skier.record.kinds import RUN_KINDS, RunKind
from skier.report.html import _text
from skier.report.parts import _facts, _image, _num, _table
from skier.report.views import RunView, load_view

__all__ = ["SECTIONS", "Section", "diagnostic_block", "kind_of", "sections_of"]


@dataclass(frozen=True)
class Section:
    """A report section: its title, and its body on the page of a run (empty: not shown)."""

    name: str
    title: str
    body: Callable[[RunView], str]


def kind_of(view: RunView | str) -> RunKind:
    """The registered kind of a run (or of a kind's name); a kind no entry knows (an old
    record) reads as a training run with no sections of its own."""
    name = view if isinstance(view, str) else view.kind
    known = RUN_KINDS.get(name)
    return known if known is not None else RunKind(name, name, "training")


def sections_of(kind: RunKind) -> list[Section]:
    """The sections ``kind`` names, in its order; a name :data:`SECTIONS` lacks is an error."""
    unknown = [name for name in kind.sections if name not in SECTIONS]
    if unknown:
        raise StoreError(
            f"report section must be one of {', '.join(SECTIONS)}; got {unknown[0]!r} "
            f"(run kind {kind.name!r}). Add it to skier.report.sections.SECTIONS or fix the "
            "kind's entry in skier.record.kinds."
        )
    return [SECTIONS[name] for name in kind.sections]


def _names(view: RunView | str) -> tuple[str, ...]:
    return tuple(s.name for s in sections_of(kind_of(view)))


def _missing_note(view: RunView) -> str:
    """A line naming the figures its kind always writes that a finished run lacks."""
    if view.status not in ("completed", "stopped"):
        return ""
    kind = kind_of(view)
    missing = kind.missing_figures(p.name for p in view.figures())
    if not missing:
        return ""
    where = str(view.run_dir) if view.run_dir is not None else "its run directory"
    return (
        f'<p class="note">missing: {_text(", ".join(missing))} (every {_text(kind.name)} run '
        f"writes it; {_text(where)} lacks it).</p>"
    )


def diagnostic_block(view: RunView, title: str | None = None) -> str:
    """A diagnostic run's findings: its summary, its figures, how it failed."""
    title = title or kind_of(view).title
    summary = view.summary
    heading = f"<h3>{_text(title)} · run {_text(view.id)} ({_text(view.status)})</h3>"
    facts = _facts([(str(k), v) for k, v in summary.items() if not isinstance(v, Mapping)])
    nested = "".join(
        f"<h3>{_text(k)}</h3>{_facts([(str(a), b) for a, b in v.items()])}"
        for k, v in summary.items()
        if isinstance(v, Mapping) and v
    )
    figures = "".join(_image(f"{view.kind} {view.id}: {p.stem}", p) for p in view.figures())
    figures += _missing_note(view)
    if view.status == "failed" and view.get("error"):
        facts += f'<p class="note">failed: {_text(view.get("error"))}</p>'
    return heading + facts + nested + figures


def _shown_in(view: RunView, name: str) -> list[RunView]:
    """The diagnostics of ``view`` whose kind names section ``name``."""
    return [d for d in view.diagnostics if name in _names(d)]


def _along_a_line(view: RunView) -> bool:
    """A kind that names both landscape sections goes by its direction: a line from the
    initial weights or another run belongs with the connectivity findings."""
    return "loss_landscapes" not in _names(view) or view.summary.get("direction") in (
        "init",
        "run",
    )


def _loss_landscapes(view: RunView) -> str:
    shown = _shown_in(view, "loss_landscapes")
    return "".join(diagnostic_block(d) for d in shown if not _along_a_line(d))


def _connectivity(view: RunView) -> str:
    shown = [d for d in _shown_in(view, "connectivity") if _along_a_line(d)]
    return "".join(
        diagnostic_block(d, "Line" if "loss_landscapes" in _names(d) else None) for d in shown
    )


def _blocks(name: str) -> Callable[[RunView], str]:
    def body(view: RunView) -> str:
        return "".join(diagnostic_block(d) for d in _shown_in(view, name))

    return body


def _lr_range_test(view: RunView) -> str:
    parts = []
    own = view.file(RunFiles.LR_FIND_PNG)
    if own is not None and "lr_range_test" not in kind_of(view).sections:  # optim.lr: auto
        found = _read_lr_find(view)
        parts.append(
            '<p class="note">optim.lr: auto — the run chose its lr with a range test first.</p>'
            + _facts([("chosen lr", found.get("lr")), ("suggestion", found.get("suggestion"))])
            + _image("LR range test (optim.lr: auto)", own)
        )
    parts += [diagnostic_block(d) for d in _shown_in(view, "lr_range_test")]
    return "".join(parts)


def _read_lr_find(view: RunView) -> dict[str, Any]:
    found = view.result.get("lr_find")
    if isinstance(found, Mapping):
        return dict(found)
    path = view.file(RunFiles.LR_FIND_JSON)
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _cv_findings(view: RunView) -> str:
    summary = view.summary
    folds = summary.get("folds") or []
    if not isinstance(folds, list):
        return ""
    metric = summary.get("metric", "val_loss")
    mean = summary.get("mean") or {}
    std = summary.get("std_by_metric") or {}
    keys = [k for k in ("val_loss", "val_error", "val_accuracy") if k in mean]
    keys += [k for k in mean if k not in keys and str(k).startswith("val_")]
    head = ["fold", "run", "status", "epochs", "chosen epoch", *keys]
    rows: list[list[Any]] = [
        [f"{f.get('repeat')}.{f.get('fold')}" + (f" seed {f['seed']}" if "seed" in f else ""),
         f.get("run_id"), f.get("status"),
         f.get("epochs_done"), f.get("chosen_epoch"), *[_num(f.get(k)) for k in keys]]
        for f in folds if isinstance(f, Mapping)
    ]  # fmt: skip
    rows.append(
        ["mean ± std", "", "", "", f"median {summary.get('median_epoch')}"]
        + [f"{_text(_num(mean.get(k)))} ± {_text(_num(std.get(k)))}" for k in keys]
    )
    facts = _facts(
        [
            ("plan", summary.get("plan")),
            ("metric", metric),
            ("mean", _num(summary.get("value"))),
            ("std", _num(summary.get("std"))),
            ("median chosen epoch", summary.get("median_epoch")),
            ("data", summary.get("sizes")),
            ("refit run", (summary.get("refit") or {}).get("run_id")),
            ("refit test metrics", (summary.get("refit") or {}).get("test_metrics")),
        ]
    )
    caption = "Fold curves and their mean (dots: each fold's chosen epoch)"
    curves = "".join(_image(caption, view.file(name)) for name in kind_of(view).figures)
    return facts + _table(head, rows) + curves + _missing_note(view)


def _search_findings(view: RunView) -> str:
    summary = view.summary
    trials = summary.get("trials")
    if not isinstance(trials, list):
        return ""
    best = summary.get("best") or {}
    direction = summary.get("direction", "minimize")
    sign = 1.0 if direction == "minimize" else -1.0
    done = [t for t in trials if isinstance(t, Mapping)]
    done.sort(key=lambda t: (t.get("value") is None, sign * float(t.get("value") or 0.0)))
    names = list((summary.get("space") or {}).keys())
    if not names:
        for t in done:
            names += [n for n in (t.get("params") or {}) if n not in names]
    head = ["trial", "state", "value", *names, "epochs", "note"]
    rows = [
        [t.get("number"), t.get("state"), _num(t.get("value")),
         *[_num((t.get("params") or {}).get(n)) for n in names], t.get("epochs"), t.get("note")]
        for t in done[:50]
    ]  # fmt: skip
    facts = _facts(
        [
            ("study", summary.get("study")),
            ("objective", summary.get("objective")),
            ("metric", summary.get("metric")),
            ("direction", direction),
            ("trials", summary.get("counts")),
            ("best trial", best.get("number")),
            ("best value", _num(best.get("value"))),
            ("best params", best.get("params")),
            ("best config", summary.get("best_config")),
            ("importances", summary.get("importances")),
            ("trained best", (summary.get("trained") or {}).get("run_id")),
        ]
    )
    figures = "".join(
        _image(name.removesuffix(".png").replace("_", " "), view.file(name))
        for name in kind_of(view).figures
    )
    more = f'<p class="note">best first; {len(done)} trials in all (trials.csv).</p>'
    figures += _missing_note(view)
    return facts + figures + "<h3>Trials</h3>" + more + _table(head, rows)


def _seeds_findings(view: RunView) -> str:
    """A group of runs over seeds: each seed's values at its best epoch, their mean ± std, and
    the figure of every metric as mean ± std bands."""
    summary = view.summary
    runs = [r for r in summary.get("runs") or [] if isinstance(r, Mapping)]
    final = summary.get("final") or {}
    test = summary.get("test") or {}
    keys = [k for k in ("val_loss", "val_error", "val_accuracy", "loss", "error") if k in final]
    head = ["seed", "run", "status", "epochs", "best epoch", *keys]
    rows: list[list[Any]] = [
        [r.get("seed"), r.get("run_id"), r.get("status"), r.get("epochs_done"),
         r.get("best_epoch"), *[_num((r.get("metrics") or {}).get(k)) for k in keys]]
        for r in runs
    ]  # fmt: skip
    if rows:
        rows.append(["mean ± std", "", "", "", ""] + [_spread(final.get(k)) for k in keys])
    facts = _facts(
        [
            ("seeds", summary.get("seeds")),
            ("seeds done", summary.get("seeds_done")),
            ("monitor", summary.get("monitor")),
            *[
                (f"{k if k.startswith('test_') else 'test_' + k} (mean ± std)", _spread(v))
                for k, v in test.items()
            ],
        ]
    )
    note = (
        '<p class="note">Values at each seed\'s best epoch (else its last); std is the sample '
        "std over the seeds. The curves: every metric's mean per epoch, the band ± one std.</p>"
    )
    caption = "Every metric as mean ± std over the seeds"
    figures = "".join(_image(caption, view.file(name)) for name in kind_of(view).figures)
    return facts + (note + _table(head, rows) if rows else "") + figures + _missing_note(view)


def _spread(value: Any) -> str | None:
    if not isinstance(value, Mapping) or value.get("mean") is None:
        return None
    return f"{_text(_num(value.get('mean')))} ± {_text(_num(value.get('std')))}"


def _own_or_parent(
    name: str, findings: Callable[[RunView], str], role: str
) -> Callable[[RunView], str]:
    """A search's findings on its own page, or on the page of a run that belongs to it."""

    def body(view: RunView) -> str:
        own = findings(view) if name in _names(view) else ""
        return own or _parent_findings(view, name, findings, role)

    return body


def _parent_findings(
    view: RunView, name: str, findings: Callable[[RunView], str], role: str
) -> str:
    """A CV fold or refit, a trial or the trained best: the CV or search it belongs to."""
    parent = view.parent
    if parent is None or name not in _names(parent.kind):
        return ""
    if parent.run_dir and Path(parent.run_dir).is_dir():
        whole = load_view(parent.run_dir, related=False)
    else:
        whole = RunView(parent.id, parent, None, {}, parent.config, view.history.__class__())
    whole.record = parent
    note = (
        f'<p class="note">This run is {role} {_text(parent.id)} ({_text(parent.name)}); '
        "its findings:</p>"
    )
    body = findings(whole)
    return note + body if body else note


# The order here is the order on the page.
SECTIONS: Final[Mapping[str, Section]] = {
    s.name: s
    for s in (
        Section("lr_range_test", "LR range test", _lr_range_test),
        Section("loss_landscapes", "Loss landscapes", _loss_landscapes),
        Section("connectivity", "Connectivity", _connectivity),
        Section("sharpness", "Sharpness", _blocks("sharpness")),
        Section("diagnostic", "Diagnostics", _blocks("diagnostic")),
        Section(
            "cross_validation",
            "Cross-validation",
            _own_or_parent("cross_validation", _cv_findings, "a run of cross-validation"),
        ),
        Section(
            "search", "Search", _own_or_parent("search", _search_findings, "a run of the search")
        ),
        Section(
            "seeds",
            "Runs over seeds",
            _own_or_parent("seeds", _seeds_findings, "one seed of the group"),
        ),
    )
}
