"""A self-contained HTML report of one run: summary, metrics, figures, per-epoch table, config.

One file with inline CSS and figures as base64 PNG data URIs, so it opens anywhere (mail, CI
artifacts) with no network. Every string that came from the user or the run is escaped.

>>> page = render_report(
...     title="digits-mlp", config={"optim": {"lr": 0.1}},
...     result={"status": "completed", "best_epoch": 1, "test_accuracy": 0.97},
...     figures={}, history=None,
... )
>>> page.startswith("<!DOCTYPE html>") and "digits-mlp" in page
True
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

import yaml

from skier._io import atomic_write_text
from skier.history import History
from skier.report.page import escape_text, render_page

__all__ = ["render_report", "write_report"]


_STATUSES = ("running", "completed", "stopped", "failed", "interrupted")
# Result keys shown in the run table, in this order, with their labels.
_RUN_FIELDS = (
    ("run_id", "run id"),
    ("status", "status"),
    ("stop_reason", "stop reason"),
    ("restored", "weights"),
    ("epochs_done", "epochs"),
    ("best_epoch", "best epoch"),
    ("monitor", "monitor"),
    ("best_value", "best value"),
    ("duration_s", "duration (s)"),
    ("run_dir", "run directory"),
    ("error", "error"),
)


_text = escape_text


def _cell(value: object) -> str:
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return '<td class="missing">—</td>' if missing else f"<td>{_text(value)}</td>"


def _test_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """Test metrics without the ``test_`` prefix, from ``result["test_metrics"]`` or test_* keys."""
    found: dict[str, float] = {}
    nested = result.get("test_metrics")
    if isinstance(nested, Mapping):
        found.update({str(k).removeprefix("test_"): v for k, v in nested.items()})
    for key, value in result.items():
        if key.startswith("test_") and key != "test_metrics" and isinstance(value, int | float):
            found.setdefault(key.removeprefix("test_"), float(value))
    return found


def _run_table(result: Mapping[str, Any]) -> str:
    rows = [
        f"<tr><th>{escape(label)}</th><td>{_text(result[key])}</td></tr>"
        for key, label in _RUN_FIELDS
        if result.get(key) is not None
    ]
    return f"<table>{''.join(rows)}</table>" if rows else ""


def _metrics_table(result: Mapping[str, Any], history: History | None) -> str:
    """One row per metric: final value, value at the best epoch, test value."""
    test = _test_metrics(result)
    best_row: Mapping[str, float] = {}
    best_epoch = result.get("best_epoch")
    if history is not None and best_epoch is not None:
        for row in history.rows:
            if row.get("epoch") == best_epoch:
                best_row = row
    keys = [k for k in (history.keys if history is not None else []) if k != "epoch"]
    keys += [k for k in test if k not in keys and f"val_{k}" not in keys]
    if not keys:
        return ""
    head = "<tr><th>metric</th><th>final</th><th>at best epoch</th><th>test</th></tr>"
    body = []
    for key in keys:
        final = history.last(key) if history is not None and key in history.keys else None
        # a val_ key with no training twin (val_ema_loss: the averaged weights) shows its test
        bare = key.removeprefix("val_")
        test_value = test.get(bare) if key == bare or bare not in keys else None
        body.append(
            f"<tr><td>{escape(key)}</td>{_cell(final)}{_cell(best_row.get(key))}"
            f"{_cell(test_value)}</tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _epoch_table(history: History, best_epoch: object) -> str:
    keys = history.keys
    head = "".join(f"<th>{escape(k)}</th>" for k in keys)
    body = []
    for row in history.rows:
        css = ' class="best"' if best_epoch is not None and row.get("epoch") == best_epoch else ""
        cells = "".join(
            _cell(int(row[k]) if k == "epoch" and k in row else row.get(k)) for k in keys
        )
        body.append(f"<tr{css}>{cells}</tr>")
    return (
        f"<details><summary>Per-epoch metrics ({len(history)} epochs)</summary>"
        f"<table><tr>{head}</tr>{''.join(body)}</table></details>"
    )


def _figure(name: str, image: Path | bytes) -> str:
    data = image.read_bytes() if isinstance(image, Path) else bytes(image)
    encoded = base64.b64encode(data).decode("ascii")
    label = escape(name, quote=True)
    return (
        f'<figure><img alt="{label}" src="data:image/png;base64,{encoded}">'
        f"<figcaption>{label}</figcaption></figure>"
    )


def _config_yaml(config: Mapping[str, Any]) -> str:
    # Through JSON first so Paths, enums and the like become plain text safe_dump accepts.
    plain = json.loads(json.dumps(config, default=str))
    return yaml.safe_dump(plain, sort_keys=False, default_flow_style=False, allow_unicode=True)


def render_report(
    *,
    title: str,
    config: Mapping[str, Any],
    result: Mapping[str, Any],
    figures: Mapping[str, Path | bytes],
    history: History | None,
) -> str:
    """The report as one HTML string (nothing external: CSS inline, figures as data URIs).

    ``result`` is the run's result.json content (``run_id``, ``status``, ``stop_reason``,
    ``best_epoch``, ``test_metrics`` or ``test_*`` keys, ...); ``figures`` maps a caption to PNG
    bytes or a PNG file.
    """
    status = result.get("status")
    status_html = ""
    if status is not None:
        css = f" status-{status}" if status in _STATUSES else ""
        status_html = f'<span class="status{css}">{_text(status)}</span>'
    subtitle = " · ".join(
        part
        for part in (
            _text(result["run_id"]) if result.get("run_id") else "",
            status_html,
            f"stopped: {_text(result['stop_reason'])}" if result.get("stop_reason") else "",
        )
        if part
    )
    sections = [f"<h1>{_text(title)}</h1>"]
    if subtitle:
        sections.append(f'<p class="sub">{subtitle}</p>')
    run_table = _run_table(result)
    if run_table:
        sections.append(f"<h2>Run</h2>{run_table}")
    metrics_table = _metrics_table(result, history)
    if metrics_table:
        sections.append(f"<h2>Metrics</h2>{metrics_table}")
    if figures:
        sections.append("<h2>Figures</h2>" + "".join(_figure(n, f) for n, f in figures.items()))
    if history is not None and len(history):
        sections.append(f"<h2>Epochs</h2>{_epoch_table(history, result.get('best_epoch'))}")
    sections.append(f"<h2>Config</h2><pre>{escape(_config_yaml(config))}</pre>")
    return render_page(title, "\n".join(sections))


def write_report(
    path: str | Path,
    *,
    title: str,
    config: Mapping[str, Any],
    result: Mapping[str, Any],
    figures: Mapping[str, Path | bytes],
    history: History | None,
) -> Path:
    """Render the report and write it to ``path`` atomically; returns the path.

    >>> write_report(run_dir.report_html, title=..., config=..., result=...,
    ...              figures={"learning curves": run_dir.learning_curves_png},
    ...              history=history)  # doctest: +SKIP
    """
    page = render_report(
        title=title, config=config, result=result, figures=figures, history=history
    )
    return atomic_write_text(path, page)
