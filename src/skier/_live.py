"""One output in a notebook, updated in place: the live display of fit, the LR range test, cv
and tune.

In a Jupyter kernel, :class:`LiveOutput` shows one output (``display(..., display_id=True)``)
and replaces its content on every :meth:`~LiveOutput.update`: an HTML block (escaped by the
caller, see :func:`status_html`) with a figure below it, as a PNG. Nothing comes from
ipywidgets, so a kernel without it shows the same and warns about nothing. IPython is imported
only once a kernel is known to be running.

The updates are throttled, so that showing costs little next to training: the text at most
every ``text_every_s`` seconds (unless a figure is due), the figure at most every
``figure_every_s`` seconds and never more often than keeps drawing under ``figure_share`` of
the wall time (a figure that takes 0.1 s to draw waits 5 s for the next at 2%). A final update
(``final=True``) always shows the latest text and figure.

Standard library only (the figure comes from a callable), so every layer may use it.

>>> shown = []
>>> class Target:
...     def display(self, bundle):
...         shown.append(bundle["text/plain"])
...     def update(self, bundle):
...         shown.append(bundle["text/plain"])
>>> live = LiveOutput(target=Target())
>>> live.update("<b>epoch 1/2</b>", "epoch 1/2")
True
>>> live.update("<b>epoch 2/2</b>", "epoch 2/2")   # within text_every_s: skipped
False
>>> live.update("<b>epoch 2/2</b>", "epoch 2/2", final=True)
True
>>> shown
['epoch 1/2', 'epoch 2/2']
"""

from __future__ import annotations

import base64
import sys
import time
from collections.abc import Callable, Iterable
from html import escape
from typing import Any, Literal, Protocol

__all__ = [
    "DisplayMode",
    "LiveOutput",
    "LiveTarget",
    "display_mode",
    "duration_text",
    "in_jupyter_kernel",
    "status_html",
]

# What a progress setting becomes: the live output (a kernel), tqdm's bar (a terminal), nothing.
DisplayMode = Literal["live", "bar", "off"]


def in_jupyter_kernel() -> bool:
    """Whether this process is a Jupyter kernel (an IPython shell under ``IPKernelApp``)."""
    # Only asks an IPython that is already running; importing it here would cost a second.
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def display_mode(progress: bool | str) -> DisplayMode:
    """Which display a progress setting (``"auto"``, ``"on"``, ``"off"``, True, False) gets.

    ``"off"``/False: nothing. Otherwise the live output in a Jupyter kernel; elsewhere the text
    bar when asked for (``"on"``/True) or, for ``"auto"``, when stderr is a terminal (never in
    pipes, scripts run with their output captured, or CI).
    """
    if progress in ("off", False):
        return "off"
    if in_jupyter_kernel():
        return "live"
    if progress in ("on", True):
        return "bar"
    return "bar" if sys.stderr.isatty() else "off"


class LiveTarget(Protocol):
    """Where the bundles go: IPython's display in a kernel, anything alike in tests."""

    def display(self, bundle: dict[str, Any]) -> None: ...

    def update(self, bundle: dict[str, Any]) -> None: ...


class _IPythonTarget:
    """One ``display_id`` output of the running kernel."""

    def __init__(self) -> None:
        from IPython.display import display  # only ever made inside a kernel

        self._display = display
        self._handle: Any = None

    def display(self, bundle: dict[str, Any]) -> None:
        self._handle = self._display(bundle, raw=True, display_id=True)

    def update(self, bundle: dict[str, Any]) -> None:
        self._handle.update(bundle, raw=True)


def duration_text(seconds: float) -> str:
    """``75.2`` → ``'1:15'``; an hour or more as ``'1:02:03'``.

    >>> duration_text(75.2), duration_text(3723)
    ('1:15', '1:02:03')
    """
    whole = max(round(seconds), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def status_html(title: str, facts: Iterable[str], table: str = "") -> str:
    """A bold ``title``, then ``facts`` joined by `` · `` (both escaped), then ``table``
    (HTML the caller has escaped, e.g. from :func:`skier._html.html_table`).

    >>> status_html("fit <1>", ["epoch 1/2"])
    '<div><b>fit &lt;1&gt;</b> · epoch 1/2</div>'
    """
    line = " · ".join([f"<b>{escape(title)}</b>", *(escape(f) for f in facts)])
    return f"<div>{line}</div>{table}"


class LiveOutput:
    """One output that a kernel shows and :meth:`update` replaces (see the module's docstring).

    ``target`` is where bundles go (default: the running kernel's display; make a LiveOutput
    only where :func:`in_jupyter_kernel` is true). ``clock`` is for tests.
    """

    def __init__(
        self,
        *,
        target: LiveTarget | None = None,
        text_every_s: float = 1.0,
        figure_every_s: float = 2.0,
        figure_share: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.text_every_s = text_every_s
        self.figure_every_s = figure_every_s
        self.figure_share = figure_share
        self._clock = clock
        self._target: LiveTarget | None = target
        self._shown = False
        self._next_text = -float("inf")
        self._next_figure = -float("inf")
        self._png: str | None = None  # the last figure, base64, shown again with new text
        self.updates = 0  # bundles sent (the first display included)
        self.figures = 0  # figures drawn

    def due(self) -> bool:
        """Whether the text is due (cheap: one clock read)."""
        return self._clock() >= self._next_text

    def update(
        self,
        html: str,
        text: str,
        figure: Callable[[], Any] | None = None,
        *,
        final: bool = False,
        force: bool = False,
    ) -> bool:
        """Show ``html`` (already escaped) and ``text`` (for plain frontends), with the figure
        ``figure()`` returns (anything with ``_repr_mimebundle_`` giving a PNG) when one is due.

        Returns whether anything was sent; outside the throttle only ``final`` sends, and
        ``force`` (the text, for an event the user waits on; the figure keeps its throttle).
        """
        now = self._clock()
        # A figure that is due goes out even when the text was just updated (from a batch).
        redraw = figure is not None and (final or now >= self._next_figure)
        if not (final or force or redraw or now >= self._next_text):
            return False
        self._next_text = now + self.text_every_s
        if figure is not None and redraw:
            started = self._clock()
            png = figure()._repr_mimebundle_().get("image/png")
            took = self._clock() - started
            self._png = base64.b64encode(png).decode("ascii") if png else self._png
            self.figures += 1
            self._next_figure = now + max(self.figure_every_s, took / self.figure_share)
        bundle: dict[str, Any] = {"text/plain": text, "text/html": html}
        if self._png is not None:
            bundle["text/html"] = html + f'<img src="data:image/png;base64,{self._png}"/>'
            bundle["image/png"] = self._png
        if self._target is None:
            self._target = _IPythonTarget()
        if self._shown:
            self._target.update(bundle)
        else:
            self._target.display(bundle)
            self._shown = True
        self.updates += 1
        return True
