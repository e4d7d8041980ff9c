"""The course report (`skier lesson run --all`) in headless Chromium: every figure renders, no
console errors, the verdicts are there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from skier.runner.lessons import run_course

from .conftest import console_errors, images_loaded

pytestmark = pytest.mark.slow


def test_course_report_renders_every_figure(browser: Any, tmp_path: Path, artifacts: Path) -> None:
    names = ["downhill", "mean-vs-sum", "lr-range-test", "backprop"]
    course = run_course(quick=True, names=names, out_dir=tmp_path)
    assert course.held == len(names)
    browser.get(course.report.as_uri())
    assert console_errors(browser) == []
    widths = images_loaded(browser)
    assert len(widths) == sum(len(o.figures) for o in course.lessons) >= len(names)
    assert all(w > 0 for w in widths)
    text = browser.find_element("tag name", "body").text
    assert f"{len(names)} of {len(names)} claims held" in text
    for name in names:
        assert browser.find_elements("id", name)
    browser.save_screenshot(str(artifacts / "course.png"))
