"""Lesson results read as tables in a notebook (claim, every check) and as one short line."""

from __future__ import annotations

import math

from skier.lessons.base import Lesson, LessonResult, Trial, check

HOSTILE = "<script>alert(1)</script>"


def _result() -> LessonResult:
    held = Trial({"x": 1.4}, [check(HOSTILE, 1.4, greater_than=1.0), check("y", 0.5, less_than=1)])
    failed = Trial({"x": 0.8}, [check(HOSTILE, 0.8, greater_than=1.0)], notes=["n <b>"])
    lesson = Lesson(7, "demo", "Demo & co", f"claim {HOSTILE}", "a set-up", (1.0, 1.0),
                    lambda ctx: held)  # fmt: skip
    return LessonResult(lesson, True, [0, 1], [held, failed], 1.25)


def test_a_lesson_result_reads_as_its_claim_and_every_check() -> None:
    html = _result()._repr_html_()
    assert "<script>" not in html and "claim &lt;script&gt;" in html
    assert "<th>7. Demo &amp; co</th>" in html
    assert "the claim DID NOT HOLD: held for 1 of 2 seed(s), smallest margin -20%" in html
    rows = html.split("<caption>Checks</caption>")[1].split("<tr>")[2:]
    assert len(rows) == 4  # two checks of seed 0, one of seed 1 and its note
    assert rows[0].startswith("<td>0</td><td>&lt;script&gt;alert(1)&lt;/script&gt;</td>"
                              "<td>1.4</td><td>&gt; 1</td><td>+40%</td><td>held</td>")  # fmt: skip
    assert "<td>0.8</td><td>&gt; 1</td><td>-20%</td><td>DID NOT HOLD</td>" in rows[2]
    assert "note: n &lt;b&gt;" in rows[3]


def test_a_lesson_result_and_a_trial_have_short_reprs() -> None:
    result = _result()
    assert repr(result) == (
        "LessonResult(demo: DID NOT HOLD, 1 of 2 seed(s), smallest margin -20%; 1.2 s)"
    )
    assert repr(result.trials[0]) == "Trial(2 of 2 checks held, smallest margin +40%)"
    html = result.trials[1]._repr_html_()
    assert "<th>seed</th>" not in html and "DID NOT HOLD" in html and "<script>" not in html


def test_a_lesson_result_to_pandas_has_a_row_per_seed_and_check() -> None:
    frame = _result().to_pandas()
    assert frame["seed"].tolist() == [0, 0, 1]
    assert frame["held"].tolist() == [True, True, False]
    assert frame["value"].tolist() == [1.4, 0.5, 0.8]
    assert math.isclose(frame["margin"].iloc[2], -0.2)
