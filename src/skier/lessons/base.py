"""The lesson machinery: a lesson is a seeded experiment that measures a claim of the course,
checks it with stated inequalities, and draws its figure.

A lesson is a function ``(ctx: Context) -> Trial`` registered with :func:`lesson`. It runs
once per seed; the figures of the first seed are kept. A claim *held* when every check held
for every seed; the result says so either way, with the numbers — a lesson is never tuned until
it passes.

>>> from skier.lessons import run
>>> result = run("downhill", quick=True)       # doctest: +SKIP
>>> result.held, result.checks[0].value        # doctest: +SKIP
(True, 3.02)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure

from skier._html import data_frame, html_table
from skier.errors import ConfigError, did_you_mean

__all__ = [
    "Check",
    "Context",
    "Lesson",
    "LessonResult",
    "Trial",
    "check",
    "get_lesson",
    "lesson",
    "lessons",
    "run",
]


@dataclass(frozen=True)
class Check:
    """One measured inequality: ``what`` was ``value``; the claim needs ``expected``.

    ``margin`` is how far ``value`` is inside its bound, relative to the bound: ``0.4`` for
    ``1.4 > 1``, ``-0.2`` for ``0.8 > 1`` (it did not hold); for an interval, the distance to
    the nearer end relative to the half-width (1 in the middle, 0 at an end). A bound of 0
    makes the margin absolute. A check whose margin is a few percent holds by
    rounding, not by the claim: another CPU or thread count may turn it.
    """

    what: str
    value: float
    expected: str
    held: bool
    margin: float = math.nan

    def line(self) -> str:
        mark = "held" if self.held else "DID NOT HOLD"
        margin = f", margin {self.margin:+.0%}" if math.isfinite(self.margin) else ""
        return f"{self.what}: {self.value:.4g} (expected {self.expected}{margin}) — {mark}"


def _relative(distance: float, bound: float) -> float:
    """``distance`` past ``bound`` relative to the bound's size (absolute for a bound of 0)."""
    return distance / abs(bound) if bound != 0 else distance


def check(
    what: str,
    value: float,
    *,
    less_than: float | None = None,
    greater_than: float | None = None,
    between: tuple[float, float] | None = None,
) -> Check:
    """A :class:`Check` of ``value`` against one bound (or a closed interval).

    >>> found = check("slope", -0.48, between=(-0.65, -0.35))
    >>> found.held, round(found.margin, 2)
    (True, 0.87)
    >>> round(check("speed-up", 3.0, greater_than=2.0).margin, 2)
    0.5
    """
    value = float(value)
    if between is not None:
        low, high = between
        half = (high - low) / 2
        margin = min(value - low, high - value) / half if half > 0 else math.nan
        expected = f"between {low:g} and {high:g}"
        return Check(what, value, expected, low <= value <= high, _finite_or_nan(margin))
    if less_than is not None:
        margin = _relative(less_than - value, less_than)
        return Check(what, value, f"< {less_than:g}", value < less_than, _finite_or_nan(margin))
    if greater_than is not None:
        margin = _relative(value - greater_than, greater_than)
        held = value > greater_than
        return Check(what, value, f"> {greater_than:g}", held, _finite_or_nan(margin))
    raise ValueError("check needs less_than, greater_than or between")


def _finite_or_nan(value: float) -> float:
    return value if math.isfinite(value) else math.nan


@dataclass
class Context:
    """What a lesson's experiment gets: its seed, whether to run the small version, whether to
    draw figures (only for the first seed), and the device to train on."""

    seed: int
    quick: bool
    draw: bool = True
    device: str = "cpu"

    def pick(self, quick: Any, full: Any) -> Any:
        """``quick`` in the small version, ``full`` otherwise."""
        return quick if self.quick else full


@dataclass
class Trial:
    """One seed's outcome: named measurements, the checks, and (first seed) the figures."""

    measurements: dict[str, float]
    checks: list[Check]
    figures: dict[str, Figure] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A trial that checks nothing would pass vacuously: that is a broken lesson, not a claim.
        if not self.checks:
            raise ValueError("a lesson's trial must make at least one check; got none.")

    @property
    def held(self) -> bool:
        return all(c.held for c in self.checks)

    @property
    def margin(self) -> float:
        """The smallest margin of its checks: how near the trial came to not holding."""
        margins = [c.margin for c in self.checks if math.isfinite(c.margin)]
        return min(margins) if margins else math.nan

    def __repr__(self) -> str:
        held = sum(c.held for c in self.checks)
        return f"Trial({held} of {len(self.checks)} checks held{_margin_note(self.margin)})"

    def _repr_html_(self) -> str:
        """Each check with its value, bound, margin and whether it held (notebooks)."""
        return _checks_table([(None, self)], caption=repr(self))


_CHECK_HEAD = ["check", "value", "expected", "margin", "held"]


def _margin_note(margin: float) -> str:
    return f", smallest margin {margin:+.0%}" if math.isfinite(margin) else ""


def _check_row(c: Check) -> list[object]:
    margin = f"{c.margin:+.0%}" if math.isfinite(c.margin) else ""
    return [c.what, c.value, c.expected, margin, "held" if c.held else "DID NOT HOLD"]


def _checks_table(trials: Sequence[tuple[int | None, Trial]], caption: str) -> str:
    """One row per check (per seed when there are seeds), then the trials' notes."""
    seeded = any(seed is not None for seed, _ in trials)
    head = (["seed"] if seeded else []) + _CHECK_HEAD
    rows: list[list[object]] = []
    for seed, trial in trials:
        rows += [([seed] if seeded else []) + _check_row(c) for c in trial.checks]
        rows += [([seed] if seeded else []) + [f"note: {n}", "", "", "", ""] for n in trial.notes]
    return html_table(head, rows, caption=caption)


@dataclass(frozen=True)
class Lesson:
    """A registered lesson: its place in the course, its claim, its set-up and run time."""

    number: int
    name: str
    title: str
    claim: str
    setup: str
    seconds: tuple[float, float]  # expected (quick, full) on 2 CPU cores
    experiment: Callable[[Context], Trial]


@dataclass
class LessonResult:
    """The lesson's claim, what was measured for each seed, and whether the claim held."""

    lesson: Lesson
    quick: bool
    seeds: list[int]
    trials: list[Trial]
    seconds: float
    threads: int = 1

    @property
    def name(self) -> str:
        return self.lesson.name

    @property
    def claim(self) -> str:
        return self.lesson.claim

    @property
    def held(self) -> bool:
        """True when every check held for every seed."""
        return all(t.held for t in self.trials)

    @property
    def held_count(self) -> int:
        return sum(t.held for t in self.trials)

    @property
    def margin(self) -> float:
        """The smallest margin of any check on any seed (negative if a check did not hold)."""
        margins = [t.margin for t in self.trials if math.isfinite(t.margin)]
        return min(margins) if margins else math.nan

    @property
    def checks(self) -> list[Check]:
        """The first seed's checks (every seed's are in :attr:`trials`)."""
        return self.trials[0].checks

    @property
    def measurements(self) -> dict[str, float]:
        return self.trials[0].measurements

    @property
    def figures(self) -> dict[str, Figure]:
        return self.trials[0].figures

    def plot(self, name: str | None = None) -> Figure:
        """The first seed's figure called ``name`` (the lesson's first figure when None).

        Lesson figures show themselves in a notebook; ``figures`` has them all.
        """
        figures = self.figures
        if not figures:
            raise ValueError(f"lesson {self.name!r} drew no figures.")
        if name is None:
            return next(iter(figures.values()))
        if name not in figures:
            raise ValueError(
                f"name must be one of the lesson's figures; got {name!r}. "
                f"Its figures: {', '.join(map(repr, figures))}."
            )
        return figures[name]

    def __repr__(self) -> str:
        verdict = "held" if self.held else "DID NOT HOLD"
        return (
            f"LessonResult({self.name}: {verdict}, {self.held_count} of {len(self.trials)} "
            f"seed(s){_margin_note(self.margin)}; {self.seconds:.1f} s)"
        )

    def _repr_html_(self) -> str:
        """The claim and the verdict, then every check of every seed (notebooks)."""
        verdict = f"held for {self.held_count} of {len(self.trials)} seed(s)"
        facts: list[list[object]] = [
            ["claim", self.claim],
            ["set-up", self.lesson.setup + (" (quick version)" if self.quick else "")],
            ["result", ("the claim held: " if self.held else "the claim DID NOT HOLD: ")
             + verdict + _margin_note(self.margin)],
            ["time", f"{self.seconds:.1f} s"],
        ]  # fmt: skip
        title = f"{self.lesson.number}. {self.lesson.title}"
        checks = _checks_table(list(zip(self.seeds, self.trials, strict=True)), "Checks")
        return html_table([title, ""], facts) + checks

    def to_pandas(self) -> Any:
        """One row per seed and check: seed, check, value, expected, margin, held."""
        rows = [
            {"seed": seed, "check": c.what, "value": c.value, "expected": c.expected,
             "margin": c.margin, "held": c.held}
            for seed, trial in zip(self.seeds, self.trials, strict=True) for c in trial.checks
        ]  # fmt: skip
        columns = ["seed", "check", "value", "expected", "margin", "held"]
        return data_frame(rows, columns, owner="LessonResult.to_pandas")

    def _margin_text(self) -> str:
        if not math.isfinite(self.margin):
            return ""
        return (
            f"; smallest margin {self.margin:+.0%} (how far the nearest check was inside its bound)"
        )

    def text(self) -> str:
        """The lesson as a short text: claim, set-up, measurements, verdict."""
        lines = [
            f"# {self.lesson.number}. {self.lesson.title}",
            "",
            f"Claim: {self.claim}",
            "",
            f"Set-up: {self.lesson.setup}" + (" (quick version)" if self.quick else ""),
            "",
            f"Result: the claim held for {self.held_count} of {len(self.trials)} seed(s) "
            f"({', '.join(map(str, self.seeds))}){self._margin_text()}.",
            "",
        ]
        for seed, trial in zip(self.seeds, self.trials, strict=True):
            lines.append(f"Seed {seed}:")
            lines += [f"- {c.line()}" for c in trial.checks]
            lines += [f"- note: {n}" for n in trial.notes]
        lines.append("")
        lines.append(f"Time: {self.seconds:.1f} s.")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the claim, per-seed measurements and checks, the verdict."""

        def num(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "lesson": self.lesson.name,
            "number": self.lesson.number,
            "title": self.lesson.title,
            "claim": self.claim,
            "setup": self.lesson.setup,
            "quick": self.quick,
            "seeds": self.seeds,
            "held": self.held,
            "held_count": self.held_count,
            "margin": num(self.margin),
            "threads": self.threads,
            "trials": [
                {
                    "seed": seed,
                    "held": t.held,
                    "measurements": {k: num(float(v)) for k, v in t.measurements.items()},
                    "checks": [
                        {
                            "what": c.what,
                            "value": num(c.value),
                            "expected": c.expected,
                            "held": c.held,
                            "margin": num(c.margin),
                        }
                        for c in t.checks
                    ],
                    "notes": t.notes,
                }
                for seed, t in zip(self.seeds, self.trials, strict=True)
            ],
            "seconds": self.seconds,
        }


_REGISTRY: dict[str, Lesson] = {}


def lesson(
    number: int, name: str, *, title: str, claim: str, setup: str, seconds: tuple[float, float]
) -> Callable[[Callable[[Context], Trial]], Callable[[Context], Trial]]:
    """Register ``experiment`` as lesson ``number`` called ``name``."""

    def register(experiment: Callable[[Context], Trial]) -> Callable[[Context], Trial]:
        if name in _REGISTRY:
            raise ValueError(f"lesson name must be unique; got {name!r} twice.")
        _REGISTRY[name] = Lesson(number, name, title, claim, setup, seconds, experiment)
        return experiment

    return register


def _load_all() -> None:
    # The lesson modules register themselves on import.
    from skier.lessons import catalog  # noqa: F401


def lessons() -> list[Lesson]:
    """Every lesson, in course order."""
    _load_all()
    return sorted(_REGISTRY.values(), key=lambda item: item.number)


def get_lesson(name: str) -> Lesson:
    _load_all()
    if name not in _REGISTRY:
        names = [item.name for item in lessons()]
        raise ConfigError(
            f"lesson must be one of the course's; got {name!r}.{did_you_mean(name, names)} "
            "List them with `skier lesson list`."
        )
    return _REGISTRY[name]


def run(
    name: str,
    quick: bool = False,
    *,
    seeds: Sequence[int] | None = None,
    device: str = "cpu",
    threads: int = 1,
    progress: Callable[[str], None] | None = None,
    experiment: Callable[[Context], Trial] | None = None,
) -> LessonResult:
    """Run lesson ``name``: one seed in the quick version, seeds 0, 1, 2 in the full one.

    ``threads`` is the number of torch CPU threads the lesson trains with (1 by default: the
    lessons' models are small, and one thread is as fast on an idle machine and far faster on a
    busy one); the caller's setting is put back. Another thread count changes the order of
    floating-point sums, as another CPU does, so a verdict that holds by a margin holds at both.

    ``experiment`` runs in place of the lesson's own (an edited copy of it, as in the notebook
    ``skier lesson notebook NAME`` writes); the result still carries the lesson's claim.
    """
    item = get_lesson(name)
    chosen = list(seeds) if seeds is not None else ([0] if quick else [0, 1, 2])
    if not chosen:
        raise ConfigError("seeds must name at least one seed; got none.")
    if threads < 1:
        raise ConfigError(f"threads must be at least 1; got {threads!r}.")
    import torch

    t0 = time.perf_counter()
    trials = []
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for i, seed in enumerate(chosen):
            if progress is not None:
                progress(f"lesson {item.name}: seed {seed} ({i + 1}/{len(chosen)})")
            context = Context(seed=seed, quick=quick, draw=i == 0, device=device)
            trials.append((experiment or item.experiment)(context))
    finally:
        torch.set_num_threads(previous)
    return LessonResult(item, quick, chosen, trials, time.perf_counter() - t0, threads)


def measurements_table(results: Mapping[str, LessonResult]) -> list[tuple[str, bool, int, int]]:
    """(name, held, held seeds, seeds) per lesson: the course's summary table."""
    return [(n, r.held, r.held_count, len(r.trials)) for n, r in results.items()]
