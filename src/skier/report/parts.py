"""Small HTML pieces every report section uses: facts, tables, figures, values as text."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from skier.report.html import _cell, _figure, _text

__all__: list[str] = []


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


def _num(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value
