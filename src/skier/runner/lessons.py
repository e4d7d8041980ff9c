"""Lesson runs: each lesson as a run directory and a store row; the whole course as one report.

What ``skier lesson run NAME`` and ``skier lesson run --all`` call::

    from skier.runner.lessons import run_course
    course = run_course(quick=True, out_dir="runs")
    print(course.report)          # runs/<id>/course.html: every lesson, in order

A lesson's run directory holds ``lesson.md`` (the claim, the set-up, every check with its number
and verdict), ``result.json``, its figures and ``report.html``. The store row (kind ``lesson``)
carries the verdict in its summary; a claim that did not hold is recorded as such.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from skier import __version__
from skier._io import atomic_write_text
from skier.lessons import LessonResult, get_lesson, lessons
from skier.lessons import run as run_one
from skier.plots import save_figure
from skier.record import RunDir, RunFiles, RunStore, new_run_id
from skier.report import render_page
from skier.runner.lifecycle import failure_reason, resolve_store_url, run_ending

__all__ = ["CourseOutcome", "LessonOutcome", "run_course", "run_lesson"]

Echo = Callable[[str], None]


@dataclass
class LessonOutcome:
    """A lesson's result and where it was written (``result`` is None if it failed)."""

    name: str
    run_id: str
    run_dir: Path
    store_url: str
    result: LessonResult | None
    error: str | None = None
    figures: dict[str, Path] = field(default_factory=dict)


@dataclass
class CourseOutcome:
    """Every lesson's outcome and the course report."""

    run_id: str
    run_dir: Path
    report: Path
    lessons: list[LessonOutcome]
    seconds: float

    @property
    def held(self) -> int:
        return sum(1 for o in self.lessons if o.result is not None and o.result.held)


def _slug(caption: str) -> str:
    keep = "".join(c.lower() if c.isalnum() else "-" for c in caption)
    return "-".join(part for part in keep.split("-") if part)[:60] or "figure"


def run_lesson(
    name: str,
    *,
    quick: bool = False,
    seeds: Sequence[int] | None = None,
    out_dir: str | Path = "runs",
    store_url: str | None = None,
    parent_id: str | None = None,
    device: str = "cpu",
    threads: int = 1,
    echo: Echo | None = None,
) -> LessonOutcome:
    """Run lesson ``name`` and record it; a lesson that raises is recorded ``failed``.

    ``device`` is where every model of the lesson trains; ``threads`` the torch CPU threads.
    """
    item = get_lesson(name)  # an unknown name is refused before anything is written
    say = echo or (lambda _m: None)
    root = Path(out_dir)
    url = resolve_store_url(store_url, None, root)
    run_id = new_run_id()
    run_dir = RunDir.create(root, run_id)
    run_dir.checkpoints.rmdir()  # a lesson writes no checkpoints
    settings = {
        "lesson": item.name,
        "quick": quick,
        "seeds": list(seeds) if seeds else None,
        "device": device,
        "threads": threads,
    }
    with RunStore(url) as store:
        store.create_run(
            f"lesson-{item.number:02d}-{item.name}", {"lesson": settings}, run_dir.path,
            kind="lesson", run_id=run_id, parent_id=parent_id,
        )  # fmt: skip
        say(f"lesson {item.number} {item.name} → {run_dir.path}")
        started = time.perf_counter()
        try:
            with run_ending(store, run_id, started=started):
                result = run_one(
                    item.name, quick=quick, seeds=seeds, device=device, threads=threads
                )
        except Exception as exc:  # recorded failed by run_ending, and the course goes on
            message = failure_reason(exc)
            return LessonOutcome(item.name, run_id, run_dir.path, store.safe_url, None, message)
        figures: dict[str, Path] = {}
        for caption, figure in result.figures.items():
            path = run_dir.path / f"{_slug(caption)}.png"
            save_figure(figure, path)
            store.add_artifact(run_id, path.name, path, "figure")
            figures[caption] = path
        text = atomic_write_text(run_dir.path / "lesson.md", result.text())
        store.add_artifact(run_id, "lesson.md", text, "json")
        payload = {**result.to_dict(), "run_id": run_id, "skier_version": __version__}
        run_dir.write_result(payload)
        store.add_artifact(run_id, RunFiles.RESULT, run_dir.result_json, "json")
        outcome = LessonOutcome(item.name, run_id, run_dir.path, store.safe_url, result, None,
                                figures)  # fmt: skip
        # The lesson's page is its section of the course page: claim, set-up, every check with
        # its value, bound and margin, the figures.
        title = f"Lesson {item.number}: {item.title}"
        page = render_page(title, _lesson_section(outcome), css=_CSS)
        atomic_write_text(run_dir.report_html, page)
        store.add_artifact(run_id, RunFiles.REPORT, run_dir.report_html, "report")
        summary = {
            "held": result.held,
            "held_count": result.held_count,
            "seeds": result.seeds,
            "margin": result.margin if math.isfinite(result.margin) else None,
            "checks": [
                {"what": c.what, "value": c.value, "expected": c.expected, "held": c.held,
                 "margin": c.margin if math.isfinite(c.margin) else None}
                for c in result.checks
            ],
        }  # fmt: skip
        store.finish_run(run_id, "completed", duration_s=result.seconds, summary=summary)
        verdict = "held" if result.held else "DID NOT HOLD"
        say(
            f"lesson {item.name}: the claim {verdict} ({result.held_count} of "
            f"{len(result.trials)} seeds, {result.seconds:.1f} s)"
        )
        return outcome


def _percent(margin: float) -> str:
    return f"{margin:+.0%}" if math.isfinite(margin) else "n/a"


def _check_margins(result: LessonResult) -> list[float]:
    """Per check of the first seed, its smallest margin over every seed (checks are the same
    list, in the same order, for every seed of a lesson)."""
    lows = []
    for i, _ in enumerate(result.checks):
        found = [t.checks[i].margin for t in result.trials if i < len(t.checks)]
        finite = [m for m in found if math.isfinite(m)]
        lows.append(min(finite) if finite else math.nan)
    return lows


def run_course(
    *,
    quick: bool = False,
    names: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    out_dir: str | Path = "runs",
    store_url: str | None = None,
    device: str = "cpu",
    threads: int = 1,
    echo: Echo | None = None,
) -> CourseOutcome:
    """Every lesson (or ``names``), in course order, each recorded, and ``course.html``."""
    chosen = [get_lesson(n) for n in names] if names else lessons()
    chosen.sort(key=lambda item: item.number)
    root = Path(out_dir)
    url = resolve_store_url(store_url, None, root)
    run_id = new_run_id()
    run_dir = RunDir.create(root, run_id)
    run_dir.checkpoints.rmdir()
    t0 = time.perf_counter()
    with RunStore(url) as store:
        store.create_run(
            "course" + (" (quick)" if quick else ""), {"course": {"quick": quick}}, run_dir.path,
            kind="course", run_id=run_id,
        )  # fmt: skip
    outcomes = []
    with run_ending(url, run_id, started=t0):
        for item in chosen:
            outcomes.append(
                run_lesson(
                    item.name, quick=quick, seeds=seeds, out_dir=root, store_url=url,
                    parent_id=run_id, device=device, threads=threads, echo=echo,
                )
            )  # fmt: skip
    seconds = time.perf_counter() - t0
    report = atomic_write_text(
        run_dir.path / RunFiles.COURSE_HTML, render_course(outcomes, quick=quick, seconds=seconds)
    )
    held = sum(1 for o in outcomes if o.result is not None and o.result.held)
    failed = [o.name for o in outcomes if o.result is None]
    with RunStore(url) as store:
        store.add_artifact(run_id, RunFiles.COURSE_HTML, report, "report")
        store.finish_run(
            run_id, "completed", duration_s=seconds,
            summary={"lessons": len(outcomes), "held": held, "failed": failed,
                     "runs": {o.name: o.run_id for o in outcomes}},
        )  # fmt: skip
    return CourseOutcome(run_id, run_dir.path, report, outcomes, seconds)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:70rem;padding:0 1rem;color:#222;line-height:1.45}
h1{margin-bottom:.2rem} h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.held{background:#e6f4ea;color:#1e6b34} .failed{background:#fde8e8;color:#a11}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:.6rem;font-size:.85rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
img{max-width:100%;height:auto;display:block;margin:.6rem 0}
.claim{font-style:italic} .muted{color:#666;font-size:.9rem}
"""


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{escape(path.stem)}" src="data:image/png;base64,{data}">'


def render_course(outcomes: Sequence[LessonOutcome], *, quick: bool, seconds: float) -> str:
    """The course as one self-contained HTML page: each lesson's claim, verdict, numbers and
    figures, in order (every string escaped, figures embedded)."""
    held = sum(1 for o in outcomes if o.result is not None and o.result.held)
    rows = []
    for o in outcomes:
        if o.result is None:
            verdict = '<span class="badge failed">failed</span>'
        elif o.result.held:
            verdict = '<span class="badge held">held</span>'
        else:
            verdict = '<span class="badge failed">did not hold</span>'
        number = o.result.lesson.number if o.result else get_lesson(o.name).number
        rows.append(
            f'<tr><td>{number}</td><td><a href="#{escape(o.name)}">{escape(o.name)}</a></td>'
            f"<td>{verdict}</td><td>{o.result.seconds if o.result else 0:.1f} s</td></tr>"
        )
    parts = [
        "<h1>The course: training deep nets, reproduced</h1>",
        f'<p class="muted">{held} of {len(outcomes)} claims held'
        f"{' (quick versions)' if quick else ''}; {seconds:.0f} s; skier {escape(__version__)}"
        "</p>",
        "<table><tr><th>#</th><th>lesson</th><th>claim</th><th>time</th></tr>"
        + "".join(rows)
        + "</table>",
    ]
    for o in outcomes:
        parts.append(_lesson_section(o))
    return render_page("skier course", "\n".join(parts), css=_CSS)


def _lesson_section(o: LessonOutcome) -> str:
    item = get_lesson(o.name)
    head = f'<h2 id="{escape(o.name)}">{item.number}. {escape(item.title)}</h2>'
    claim = f'<p class="claim">{escape(item.claim)}</p>'
    setup = f"<p><b>Set-up.</b> {escape(item.setup)}</p>"
    if o.result is None:
        error = escape((o.error or "").splitlines()[-1] if o.error else "")
        return head + claim + f'<p class="badge failed">failed: {error}</p>'
    r: Any = o.result
    checks = "".join(
        f"<tr><td>{escape(c.what)}</td><td>{c.value:.4g}</td><td>{escape(c.expected)}</td>"
        f"<td>{_percent(c.margin)}</td><td>{_percent(low)}</td>"
        f"<td>{'held' if c.held else 'did not hold'}</td></tr>"
        for c, low in zip(r.checks, _check_margins(r), strict=True)
    )
    verdict = (
        f"<p><b>Result.</b> The claim held for {r.held_count} of {len(r.trials)} seed(s) "
        f"({', '.join(map(str, r.seeds))}); smallest margin {_percent(r.margin)}; checks of "
        f"seed {r.seeds[0]} (margin: how far the value is inside its bound, relative to it):</p>"
    )
    table = (
        "<table><tr><th>measured</th><th>value</th><th>expected</th><th>margin</th>"
        "<th>smallest margin over seeds</th><th></th></tr>" + checks + "</table>"
    )
    figures = "".join(_image(p) for p in o.figures.values() if p.is_file())
    link = (
        f'<p class="muted">run {escape(o.run_id)} · {r.seconds:.1f} s · {r.threads} torch '
        f"thread{'s' if r.threads != 1 else ''}</p>"
    )
    return head + claim + setup + verdict + table + figures + link
