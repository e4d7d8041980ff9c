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

from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from skier._io import atomic_write_text
from skier.record import RunFiles, RunStore
from skier.report.comparison import group_bands, run_labels
from skier.report.html import (
    _RUN_FIELDS,
    _STATUSES,
    _config_yaml,
    _epoch_table,
    _figure,
    _metrics_table,
    _text,
)
from skier.report.page import render_page
from skier.report.parts import _facts, _image, _png, _table
from skier.report.sections import SECTIONS, diagnostic_block, kind_of
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
    kind = kind_of(view)
    # figures with a section of their own; the rest go under "Other figures"
    used = {RunFiles.LEARNING_CURVES_PNG, RunFiles.LR_FIND_PNG, RunFiles.GRADIENT_FLOW_PNG,
            RunFiles.SHARPNESS_STEPS_PNG, *kind.figures}  # fmt: skip
    page.add("Summary", _summary_section(view))
    result = _result_for_tables(view)
    page.add("Metrics", _metrics_table(result, view.history if len(view.history) else None))
    page.add("Learning curves", _learning_section(view))
    page.add("Learning-rate schedule", _schedule_section(view))
    page.add("Gradient flow", _image("Gradient flow", view.file(RunFiles.GRADIENT_FLOW_PNG)))
    page.add(
        "Sharpness during training",
        _image("Sharpness against 2/lr", view.file(RunFiles.SHARPNESS_STEPS_PNG)),
    )
    if kind.role == "diagnostic":  # the run is a diagnostic itself: its findings are its body
        page.add(kind.title, diagnostic_block(view))
        used.update(p.name for p in view.figures())
    for section in SECTIONS.values():
        page.add(section.title, section.body(view))
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

    labels = run_labels(views)
    page = _Page()
    rows: list[list[Any]] = [
        [label, v.id, v.kind, v.status, v.get("epochs_done"),
         f"{v.get('monitor')}={_text(v.get('best_value'))}" if v.get("best_value") is not None
         else None, v.test_metrics or None]
        for label, v in zip(labels, views, strict=True)
    ]  # fmt: skip
    page.add("Runs", _table(["run", "id", "kind", "status", "epochs", "best", "test"], rows))
    histories = {label: v.history for label, v in zip(labels, views, strict=True)}
    groups = {label: group_bands(v) for label, v in zip(labels, views, strict=True)}
    bands = {label: b for label, b in groups.items() if b is not None}
    if any(len(h) for h in histories.values()):
        figure = plot_compare_figure(histories, [metric] if metric else None, bands=bands)
        caption = "Curves of every run overlaid" + (
            " (a group over seeds: its mean, the band ± one std)" if bands else ""
        )
        page.add("Curves", _figure(caption, _png(figure)))
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
