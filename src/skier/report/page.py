"""The one page renderer: every HTML page skier writes (run report, comparison, search, course)
goes through :func:`render_page`, which owns the head, the styles and the escaping of the title.

>>> page = render_page("<b>run</b>", "<p>body</p>")
>>> page.startswith("<!DOCTYPE html>") and "<title>&lt;b&gt;run&lt;/b&gt;</title>" in page
True
"""

from __future__ import annotations

import math
from html import escape

__all__ = ["BASE_CSS", "escape_text", "render_page"]

BASE_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
.sub { color: #666; margin-top: 0; }
.status { display: inline-block; padding: .1em .6em; border-radius: .8em; color: #fff;
          background: #777; font-size: .85em; }
.status-completed { background: #2e7d32; } .status-stopped { background: #ef6c00; }
.status-failed { background: #c62828; } .status-interrupted { background: #6a1b9a; }
.status-running { background: #1565c0; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .25em .7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; } tr.best td { background: #e8f5e9; }
td.missing { color: #aaa; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #666; font-size: .9em; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; border: 1px solid #eee; }
details summary { cursor: pointer; margin: .5em 0; }
"""


def escape_text(value: object) -> str:
    """Any value as escaped HTML text; numbers compact, missing values as a dash.

    >>> escape_text("<i>"), escape_text(0.123456), escape_text(None)
    ('&lt;i&gt;', '0.1235', '—')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"  # also "inf" / "-inf", which are worth seeing
    return escape(str(value), quote=True)


def render_page(title: str, body: str, *, css: str = "") -> str:
    """A self-contained HTML page: ``title`` (escaped here) and ``body`` (HTML whose strings the
    caller escaped), with the shared styles plus the page's own ``css``."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape_text(title)}</title><style>{BASE_CSS}{css}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )
