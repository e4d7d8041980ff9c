"""Small HTML tables for notebook display (``_repr_html_``): every cell escaped.

Standard library only, so the leaves (``history``) and the data types can use it.

>>> html_table(["a"], [["<b>"]])
'<table><thead><tr><th>a</th></tr></thead><tbody><tr><td>&lt;b&gt;</td></tr></tbody></table>'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

__all__ = ["cell_text", "data_frame", "html_table"]


def cell_text(value: object) -> str:
    """A value as a short text: floats to 4 significant digits, NaN and None as empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def html_table(
    head: Sequence[object], rows: Iterable[Sequence[object]], *, caption: str | None = None
) -> str:
    """A ``<table>`` of ``head`` and ``rows``; every cell and the caption are escaped."""
    parts = ["<table>"]
    if caption:
        parts.append(f"<caption>{escape(caption)}</caption>")
    parts.append("<thead><tr>" + "".join(f"<th>{escape(cell_text(h))}</th>" for h in head))
    parts.append("</tr></thead><tbody>")
    for row in rows:
        parts.append("<tr>" + "".join(f"<td>{escape(cell_text(v))}</td>" for v in row) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def data_frame(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None, *, owner: str
) -> Any:
    """A ``pandas.DataFrame`` of ``rows`` (NaN where a row has no value); ``owner`` names the
    method in the error when pandas is not installed.

    >>> data_frame([{"a": 1}], None, owner="X.to_pandas").to_dict("list")
    {'a': [1]}
    """
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError(
            f"{owner} needs pandas, which is not installed; install it with "
            "pip install 'skier[notebook]' (or pip install pandas)."
        ) from exc
    return pd.DataFrame(list(rows), columns=None if columns is None else list(columns))
