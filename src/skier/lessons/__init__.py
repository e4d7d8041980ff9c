"""Executable lessons: each claim of the course on training deep nets as a seeded experiment
that runs, draws its figure and checks that the claim holds on real data.

>>> from skier.lessons import lessons, run
>>> [item.name for item in lessons()][:2]          # doctest: +SKIP
['downhill', 'sgd-noise']
>>> run("sgd-noise", quick=True).held             # doctest: +SKIP
True

``skier lesson list`` and ``skier lesson run NAME [--quick]`` / ``--all`` do the same from the
command line, with a run directory, a store row and (for ``--all``) the course report.
"""

from skier.lessons._notebook import lesson_notebook, write_lesson_notebook
from skier.lessons.base import (
    Check,
    Context,
    Lesson,
    LessonResult,
    Trial,
    check,
    get_lesson,
    lesson,
    lessons,
    run,
)

__all__ = [
    "Check",
    "Context",
    "Lesson",
    "LessonResult",
    "Trial",
    "check",
    "get_lesson",
    "lesson",
    "lesson_notebook",
    "lessons",
    "run",
    "write_lesson_notebook",
]
