"""The full report of a run, or of several runs side by side, as one self-contained HTML file.

Sections appear when their data exists: summary, metrics, learning curves, lr schedule, gradient
flow, LR range test, loss landscapes, connectivity (lines between weights), sharpness,
cross-validation, search, the runs that belong to it, per-epoch table, config and files. Figures
are embedded as PNG data URIs; every string from the user or the run is escaped. No torch here.

>>> import tempfile
>>> from skier.record import RunStore, default_store_url
>>> with RunStore(default_store_url(tempfile.mkdtemp())) as store:
...     run_id = store.create_run("<b>digits</b>", {"optim": {"lr": 0.1}}, None)
...     store.log_epoch(run_id, 1, {"loss": 0.5, "val_loss": 0.6})
...     page = render_run_report(load_view(run_id, store=store))
>>> "&lt;b&gt;digits&lt;/b&gt;" in page and "<b>digits" not in page
True
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from html import escape
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from skier._io import atomic_write_text
from skier.record import RunFiles, RunStore
from skier.record.kinds import RUN_KINDS
from skier.report.html import (
    _RUN_FIELDS,
    _STATUSES,
    _cell,
    _config_yaml,
    _epoch_table,
    _figure,
    _metrics_table,
    _text,
)
from skier.report.page import render_page
from skier.report.views import RunView, config_differences, load_view

__all__ = ["render_comparison_report", "render_run_report", "write_run_report"]

_EXTRA_CSS = """
nav { background: #fafafa; border: 1px solid #eee; padding: .4em .8em; font-size: .92em; }
nav a { margin-right: .9em; white-space: nowrap; }
section { margin-top: 1.2em; } .note { color: #555; }
h3 { font-size: 1.05em; margin: 1.1em 0 .3em; }
td.text, th.text { text-align: left; }
"""

# Result keys shown in the summary table of a run, with their labels.
_FACTS = (("id", "run id"), ("kind", "kind"), *_RUN_FIELDS[1:])

_DIAGNOSTIC_TITLES = {k.name: k.title for k in RUN_KINDS.values() if k.role == "diagnostic"}

_SEARCH_FIGURES = (
    RunFiles.OPTIMIZATION_HISTORY_PNG,
    RunFiles.PARAM_IMPORTANCES_PNG,
    RunFiles.PARALLEL_COORDINATES_PNG,
    RunFiles.SLICES_PNG,
)


class _Page:
    """Sections in order, each with an anchor for the contents bar."""

    def __init__(self) -> None:
        self.sections: list[tuple[str, str, str]] = []

    def add(self, title: str, body: str) -> None:
        if body:
            anchor = f"s{len(self.sections) + 1}"
            self.sections.append((anchor, title, body))

    def html(self, title: str, header: str) -> str:
        nav = " ".join(f'<a href="#{a}">{escape(t)}</a>' for a, t, _ in self.sections)
        body = "\n".join(
            f'<section id="{a}"><h2>{escape(t)}</h2>{b}</section>' for a, t, b in self.sections
        )
        return render_page(title, f"{header}\n<nav>{nav}</nav>\n{body}", css=_EXTRA_CSS)


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _format(value: Any) -> str:
    """A summary value as escaped text: numbers compact, lists and mappings shortened."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return _text(value)
    if isinstance(value, list | tuple):
        shown = ", ".join(_format(v) for v in value[:8])
        return f"[{shown}{', …' if len(value) > 8 else ''}]"
    if isinstance(value, Mapping):
        return ", ".join(f"{escape(str(k))}={_format(v)}" for k, v in list(value.items())[:12])
    return _text(value)


def _facts(rows: Sequence[tuple[str, Any]]) -> str:
    body = "".join(
        f'<tr><th class="text">{escape(label)}</th><td class="text">{_format(value)}</td></tr>'
        for label, value in rows
        if value is not None and value != "" and value != {} and value != []
    )
    return f"<table>{body}</table>" if body else ""


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return ""
    top = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(_cell(v) if isinstance(v, float) else
                         f"<td>{_format(v)}</td>" for v in row) + "</tr>"
        for row in rows
    )  # fmt: skip
    return f"<table><tr>{top}</tr>{body}</table>"


def _image(caption: str, path: Path | None) -> str:
    return _figure(caption, path) if path is not None else ""


def _status_badge(status: str) -> str:
    css = f" status-{status}" if status in _STATUSES else ""
    return f'<span class="status{css}">{_text(status)}</span>'


def _header(view: RunView) -> str:
    parts = [_text(view.id), _status_badge(view.status), _text(view.kind)]
    if view.get("stop_reason"):
        parts.append(f"stopped: {_text(view.get('stop_reason'))}")
    return f'<h1>{_text(view.name)}</h1><p class="sub">{" · ".join(parts)}</p>'


def _result_for_tables(view: RunView) -> dict[str, Any]:
    result = dict(view.result)
    for key in ("best_epoch", "monitor", "best_value", "epochs_done", "stop_reason"):
        if result.get(key) is None and view.get(key) is not None:
            result[key] = view.get(key)
    if not result.get("test_metrics"):
        result["test_metrics"] = view.test_metrics
    return result


def _summary_section(view: RunView) -> str:
    rows = []
    for key, label in _FACTS:
        value = {"id": view.id, "kind": view.kind, "status": view.status}.get(key, view.get(key))
        if key == "run_dir" and view.run_dir is not None:
            value = str(view.run_dir)
        rows.append((label, value))
    if view.record is not None:
        rows.insert(3, ("started", view.record.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")))
    if view.parent is not None:
        rows.append(("part of", f"{view.parent.kind} run {view.parent.id} ({view.parent.name})"))
    elif view.result.get("source_run"):
        rows.append(("looked at", f"run {view.result['source_run']}"))
    for key, value in view.test_metrics.items():
        rows.append((key if key.startswith("test_") else f"test_{key}", value))
    return _facts(rows)


def _learning_section(view: RunView) -> str:
    own = view.file(RunFiles.LEARNING_CURVES_PNG)
    if own is not None:
        return _image("Learning curves (train and validation per epoch)", own)
    if not len(view.history):
        return ""
    from skier.plots import plot_learning_figure

    result = SimpleNamespace(
        history=view.history,
        best_epoch=view.get("best_epoch"),
        stop_reason=view.get("stop_reason"),
        test_metrics=view.test_metrics,
    )
    caption = "Learning curves (train and validation per epoch)"
    return _figure(caption, _png(plot_learning_figure(result)))


def _schedule_section(view: RunView) -> str:
    lrs = view.lr_steps()
    if not lrs:
        return ""
    from skier.plots.compare import plot_lr_steps

    epochs = view.get("epochs_done")
    per_epoch = len(lrs) // int(epochs) if isinstance(epochs, int) and epochs > 0 else None
    positive = min(lrs) > 0
    spread = positive and max(lrs) / min(lrs) > 100
    ax = plot_lr_steps(lrs, steps_per_epoch=per_epoch or None, log_scale=spread)
    note = (
        f'<p class="note">{len(lrs)} optimizer steps; lr from {_text(lrs[0])} to '
        f"{_text(lrs[-1])} (min {_text(min(lrs))}, max {_text(max(lrs))}).</p>"
    )
    return note + _figure("Learning rate at every optimizer step (lr.csv)", _png(ax.figure))


def _diagnostic_block(view: RunView, title: str) -> str:
    summary = view.summary
    heading = f"<h3>{_text(title)} · run {_text(view.id)} ({_text(view.status)})</h3>"
    facts = _facts([(str(k), v) for k, v in summary.items() if not isinstance(v, Mapping)])
    nested = "".join(
        f"<h3>{_text(k)}</h3>{_facts([(str(a), b) for a, b in v.items()])}"
        for k, v in summary.items()
        if isinstance(v, Mapping) and v
    )
    figures = "".join(_image(f"{view.kind} {view.id}: {p.stem}", p) for p in view.figures())
    if view.status == "failed" and view.get("error"):
        facts += f'<p class="note">failed: {_text(view.get("error"))}</p>'
    return heading + facts + nested + figures


def _connectivity(view: RunView) -> bool:
    return view.kind in ("connect", "connectivity") or (
        view.kind == "landscape" and view.summary.get("direction") in ("init", "run")
    )


def _lr_find_section(view: RunView, diagnostics: Sequence[RunView]) -> str:
    parts = []
    own = view.file(RunFiles.LR_FIND_PNG)
    if own is not None and view.kind != "lr_find":
        found = _read_lr_find(view)
        parts.append(
            '<p class="note">optim.lr: auto — the run chose its lr with a range test first.</p>'
            + _facts([("chosen lr", found.get("lr")), ("suggestion", found.get("suggestion"))])
            + _image("LR range test (optim.lr: auto)", own)
        )
    parts += [_diagnostic_block(d, "LR range test") for d in diagnostics]
    return "".join(parts)


def _read_lr_find(view: RunView) -> dict[str, Any]:
    found = view.result.get("lr_find")
    if isinstance(found, Mapping):
        return dict(found)
    path = view.file(RunFiles.LR_FIND_JSON)
    if path is None:
        return {}
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _cv_section(view: RunView) -> str:
    summary = view.summary
    folds = summary.get("folds") or []
    if view.kind != "cv" or not isinstance(folds, list):
        return ""
    metric = summary.get("metric", "val_loss")
    mean = summary.get("mean") or {}
    std = summary.get("std_by_metric") or {}
    keys = [k for k in ("val_loss", "val_error", "val_accuracy") if k in mean]
    keys += [k for k in mean if k not in keys and str(k).startswith("val_")]
    head = ["fold", "run", "status", "epochs", "chosen epoch", *keys]
    rows: list[list[Any]] = [
        [f"{f.get('repeat')}.{f.get('fold')}", f.get("run_id"), f.get("status"),
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
    curves = _image(
        "Fold curves and their mean (dots: each fold's chosen epoch)",
        view.file(RunFiles.CV_CURVES_PNG),
    )
    return facts + _table(head, rows) + curves


def _num(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def _search_section(view: RunView) -> str:
    summary = view.summary
    trials = summary.get("trials")
    if view.kind != "tune" or not isinstance(trials, list):
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
        for name in _SEARCH_FIGURES
    )
    more = f'<p class="note">best first; {len(done)} trials in all (trials.csv).</p>'
    return facts + figures + "<h3>Trials</h3>" + more + _table(head, rows)


def _parent_section(view: RunView, kind: str) -> str:
    """A CV fold or refit, a trial or the trained best: the CV or search it belongs to."""
    parent = view.parent
    if parent is None or parent.kind != kind:
        return ""
    if parent.run_dir and Path(parent.run_dir).is_dir():
        whole = load_view(parent.run_dir, related=False)
    else:
        whole = RunView(parent.id, parent, None, {}, parent.config, view.history.__class__())
    whole.record = parent
    role = {"cv": "a run of cross-validation", "tune": "a run of the search"}[kind]
    note = (
        f'<p class="note">This run is {role} {_text(parent.id)} ({_text(parent.name)}); '
        "its findings:</p>"
    )
    body = _cv_section(whole) if kind == "cv" else _search_section(whole)
    return note + body if body else note


def _children_section(view: RunView) -> str:
    if not view.children:
        return ""
    rows = [
        [c.id, c.kind, c.name, c.status, c.epochs_done,
         f"{c.monitor}={_text(c.best_value)}" if c.best_value is not None else None]
        for c in view.children
    ]  # fmt: skip
    return _table(["run", "kind", "name", "status", "epochs", "best"], rows)


def _files_section(view: RunView) -> str:
    if view.run_dir is None or not view.run_dir.is_dir():
        return ""
    rows: list[list[Any]] = []
    for path in sorted(view.run_dir.rglob("*")):
        if path.is_file() and len(rows) < 200:
            rows.append([str(path.relative_to(view.run_dir)), f"{path.stat().st_size:,} B"])
    return _table(["file", "size"], rows)


def _run_sections(view: RunView, page: _Page) -> None:
    used = {
        RunFiles.LEARNING_CURVES_PNG, RunFiles.LR_FIND_PNG, RunFiles.GRADIENT_FLOW_PNG,
        RunFiles.CV_CURVES_PNG, *_SEARCH_FIGURES,
    }  # fmt: skip
    page.add("Summary", _summary_section(view))
    result = _result_for_tables(view)
    page.add("Metrics", _metrics_table(result, view.history if len(view.history) else None))
    page.add("Learning curves", _learning_section(view))
    page.add("Learning-rate schedule", _schedule_section(view))
    page.add("Gradient flow", _image("Gradient flow", view.file(RunFiles.GRADIENT_FLOW_PNG)))
    own_kind = view.kind if view.kind in _DIAGNOSTIC_TITLES else None
    if own_kind is not None:  # the run is a diagnostic itself: its findings are its body
        title = _DIAGNOSTIC_TITLES[own_kind]
        page.add(title, _diagnostic_block(view, title))
        used.update(p.name for p in view.figures())
    diags = view.diagnostics
    page.add("LR range test", _lr_find_section(view, [d for d in diags if d.kind == "lr_find"]))
    page.add(
        "Loss landscapes",
        "".join(
            _diagnostic_block(d, "Loss landscape")
            for d in diags
            if d.kind == "landscape" and not _connectivity(d)
        ),
    )
    page.add(
        "Connectivity",
        "".join(
            _diagnostic_block(d, "Mode connectivity" if d.kind != "landscape" else "Line")
            for d in diags
            if _connectivity(d)
        ),
    )
    page.add(
        "Sharpness",
        "".join(_diagnostic_block(d, "Sharpness") for d in diags if d.kind == "sharpness"),
    )
    page.add("Cross-validation", _cv_section(view) or _parent_section(view, "cv"))
    page.add("Search", _search_section(view) or _parent_section(view, "tune"))
    page.add("Runs that belong to it", _children_section(view))
    others = [p for p in view.figures() if p.name not in used]
    page.add("Other figures", "".join(_image(p.stem.replace("_", " "), p) for p in others))
    if len(view.history):
        page.add("Epochs", _epoch_table(view.history, view.get("best_epoch")))
    if view.config:
        page.add("Config", f"<pre>{escape(_config_yaml(view.config))}</pre>")
    page.add("Files", _files_section(view))


def render_run_report(view: RunView) -> str:
    """The report of one run as an HTML string (see the module docstring)."""
    page = _Page()
    _run_sections(view, page)
    return page.html(view.name, _header(view))


def render_comparison_report(views: Sequence[RunView], *, metric: str | None = None) -> str:
    """Several runs in one page: a table of them, their curves overlaid, the settings that
    differ, then each run's metrics and learning curves.

    >>> page = render_comparison_report([view_a, view_b], metric="val_error")  # doctest: +SKIP
    """
    from skier.plots.compare import plot_compare_figure

    labels = _labels(views)
    page = _Page()
    rows: list[list[Any]] = [
        [label, v.id, v.kind, v.status, v.get("epochs_done"),
         f"{v.get('monitor')}={_text(v.get('best_value'))}" if v.get("best_value") is not None
         else None, v.test_metrics or None]
        for label, v in zip(labels, views, strict=True)
    ]  # fmt: skip
    page.add("Runs", _table(["run", "id", "kind", "status", "epochs", "best", "test"], rows))
    histories = {label: v.history for label, v in zip(labels, views, strict=True)}
    if any(len(h) for h in histories.values()):
        figure = plot_compare_figure(histories, [metric] if metric else None)
        page.add("Curves", _figure("Curves of every run overlaid", _png(figure)))
    diffs = config_differences({v.id: v.config for v in views})
    if diffs:
        table = _table(["setting", *labels], [[key, *values] for key, values in diffs])
        page.add("Config differences", table)
    elif len(views) > 1:
        page.add("Config differences", '<p class="note">The configs are the same.</p>')
    for label, view in zip(labels, views, strict=True):
        result = _result_for_tables(view)
        body = _summary_section(view) + _metrics_table(
            result, view.history if len(view.history) else None
        )
        body += _learning_section(view)
        page.add(label, body)
    title = "Comparison: " + ", ".join(v.name for v in views)
    return page.html(title, f"<h1>{_text(title)}</h1>")


def _labels(views: Sequence[RunView]) -> list[str]:
    """Short, unique labels: the name, with the id when names repeat."""
    names = [v.name for v in views]
    return [f"{n} ({v.id})" if names.count(n) > 1 else n for n, v in zip(names, views, strict=True)]


def write_run_report(
    runs: str | Path | Sequence[str | Path],
    *,
    store: RunStore | None = None,
    out: str | Path | None = None,
    metric: str | None = None,
    loader: Callable[..., RunView] = load_view,
) -> Path:
    """Write the report of one run (default: its ``report.html``) or the comparison of several
    (default: ``report.html`` in the current folder); returns the path written.

    >>> write_run_report("runs/20261122-101500-ab12cd")            # doctest: +SKIP
    PosixPath('runs/20261122-101500-ab12cd/report.html')
    """
    refs = [runs] if isinstance(runs, str | Path) else list(runs)
    views = [loader(ref, store=store) for ref in refs]
    if len(views) == 1:
        view = views[0]
        page = render_run_report(view)
        if out is None:
            if view.run_dir is None:
                out = Path(f"report-{view.id}.html")
            else:
                out = view.run_dir / RunFiles.REPORT
    else:
        page = render_comparison_report(views, metric=metric)
        out = out if out is not None else Path(RunFiles.REPORT)
    return atomic_write_text(out, page)
