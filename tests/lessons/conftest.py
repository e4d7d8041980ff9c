"""One run of each lesson's quick version per thread count, shared by the tests of a session.

Every lesson is run on seeds 0-4 at 1 and 2 torch threads (thread count changes the order of
floating-point sums, as another CPU does): its verdict must hold on all of them. The tests of a
lesson's numbers read seed 0 of the same run, so nothing is trained twice.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import pytest

from skier.lessons import LessonResult, run

SEEDS = (0, 1, 2, 3, 4)
THREADS = (1, 2)


@cache
def quick_result(name: str, threads: int = 1) -> LessonResult:
    """Lesson ``name``'s quick version on :data:`SEEDS` at ``threads`` torch threads."""
    return run(name, quick=True, seeds=list(SEEDS), threads=threads)


@pytest.fixture(scope="session")
def quick() -> Callable[..., LessonResult]:
    """``quick(name, threads=1)``: the shared run of lesson ``name`` (see :func:`quick_result`)."""
    return quick_result
