"""The lesson machinery: checks, verdicts over seeds, honest failure, records and the course."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from skier.errors import ConfigError
from skier.lessons import Context, Trial, check, lessons, run
from skier.lessons import base as lesson_base
from skier.lessons._tools import axes
from skier.record import RunStore, default_store_url
from skier.runner.lessons import run_course, run_lesson


def test_checks_compare_honestly() -> None:
    assert check("x", 0.5, less_than=1.0).held
    assert not check("x", 1.0, less_than=1.0).held
    assert check("x", 2.0, greater_than=1.0).held
    assert not check("x", math.nan, greater_than=1.0).held
    inside = check("slope", -0.5, between=(-0.6, -0.4))
    assert inside.held and inside.expected == "between -0.6 and -0.4"
    assert not check("slope", -0.3, between=(-0.6, -0.4)).held
    with pytest.raises(ValueError, match="needs less_than"):
        check("x", 1.0)


def test_every_check_says_how_far_inside_its_bound_it_is() -> None:
    assert check("x", 1.4, greater_than=1.0).margin == pytest.approx(0.4)
    assert check("x", 0.8, greater_than=1.0).margin == pytest.approx(-0.2)  # did not hold
    assert check("x", 0.5, less_than=2.0).margin == pytest.approx(0.75)
    assert check("x", -0.5, less_than=-1.0).margin == pytest.approx(-0.5)
    assert check("x", 0.25, less_than=0.0).margin == pytest.approx(-0.25)  # absolute at 0
    # An interval: distance to the nearer end over the half-width (1 in the middle).
    assert check("x", -0.5, between=(-0.6, -0.4)).margin == pytest.approx(1.0)
    assert check("x", -0.42, between=(-0.6, -0.4)).margin == pytest.approx(0.2)
    assert check("x", -0.3, between=(-0.6, -0.4)).margin == pytest.approx(-1.0)
    assert math.isnan(check("x", math.nan, greater_than=1.0).margin)
    assert "margin +40%" in check("x", 1.4, greater_than=1.0).line()


def test_a_trial_must_check_something() -> None:
    with pytest.raises(ValueError, match="at least one check; got none"):
        Trial({"x": 1.0}, [])


@pytest.fixture
def toy_lessons() -> Iterator[None]:
    """Two throwaway lessons: one whose claim holds for even seeds only, one that crashes."""

    def parity(ctx: Context) -> Trial:
        figures = {}
        if ctx.draw:
            fig, (ax,) = axes(1)
            ax.plot([0, 1], [0, ctx.seed])
            figures["A <b>line</b>"] = fig
        return Trial({"seed": float(ctx.seed)}, [check("seed is even", ctx.seed % 2, less_than=1)],
                     figures)  # fmt: skip

    def broken(ctx: Context) -> Trial:
        raise RuntimeError("the experiment broke")

    lesson_base._load_all()
    lesson_base.lesson(90, "toy-parity", title="Parity <i>", claim="Seeds are <even>",
                       setup="none", seconds=(0.0, 0.0))(parity)  # fmt: skip
    lesson_base.lesson(91, "toy-broken", title="Broken", claim="It runs", setup="none",
                       seconds=(0.0, 0.0))(broken)  # fmt: skip
    try:
        yield
    finally:
        del lesson_base._REGISTRY["toy-parity"], lesson_base._REGISTRY["toy-broken"]


def test_a_claim_holds_only_if_it_holds_for_every_seed(toy_lessons: None) -> None:
    one = run("toy-parity", quick=True)
    assert one.seeds == [0] and one.held
    assert one.margin == pytest.approx(1.0) and "smallest margin +100%" in one.text()
    full = run("toy-parity")
    assert full.seeds == [0, 1, 2] and not full.held and full.held_count == 2
    assert full.margin == pytest.approx(0.0)  # seed 1: 1 is not < 1, by nothing
    assert "the claim held for 2 of 3 seed(s)" in full.text()
    assert "DID NOT HOLD" in full.text()
    record = full.to_dict()
    assert record["held"] is False and [t["held"] for t in record["trials"]] == [True, False, True]
    assert list(full.figures) == ["A <b>line</b>"]  # the first seed's figure only
    assert not full.trials[1].figures


def test_an_edited_experiment_runs_under_the_lessons_claim(toy_lessons: None) -> None:
    """``run(NAME, experiment=...)``: what a lesson notebook calls after a student's edit."""

    def edited(ctx: Context) -> Trial:
        return Trial({"seed": 1.0}, [check("seed is even", 1, less_than=1)])

    result = run("toy-parity", quick=True, experiment=edited)
    assert result.claim == "Seeds are <even>" and result.measurements == {"seed": 1.0}
    assert not result.held and run("toy-parity", quick=True).held  # the lesson's own is kept


def test_unknown_lessons_are_refused_with_a_hint() -> None:
    with pytest.raises(ConfigError, match=r"got 'downhil'\. Did you mean 'downhill'"):
        run("downhil")
    names = [item.name for item in lessons()]
    assert names[0] == "downhill" and len(set(names)) == len(names)
    numbers = [item.number for item in lessons()]
    assert numbers == sorted(numbers)


def test_a_lesson_run_is_recorded_and_a_crash_is_failed_not_hidden(
    tmp_path: Path, toy_lessons: None
) -> None:
    outcome = run_lesson("toy-parity", seeds=[1], out_dir=tmp_path)
    assert outcome.result is not None and not outcome.result.held
    saved = json.loads((outcome.run_dir / "result.json").read_text())
    assert saved["held"] is False and saved["trials"][0]["checks"][0]["value"] == 1.0
    assert "DID NOT HOLD" in (outcome.run_dir / "lesson.md").read_text()
    crashed = run_lesson("toy-broken", quick=True, out_dir=tmp_path)
    assert crashed.result is None and "the experiment broke" in (crashed.error or "")
    with RunStore(default_store_url(tmp_path)) as store:
        assert store.get_run(outcome.run_id).summary["held"] is False
        failed = store.get_run(crashed.run_id)
        assert failed.status == "failed" and "the experiment broke" in (failed.error or "")


def test_the_course_report_has_every_lesson_escaped(tmp_path: Path, toy_lessons: None) -> None:
    course = run_course(quick=True, names=["toy-broken", "toy-parity"], out_dir=tmp_path)
    page = course.report.read_text()
    assert page.index("toy-parity") < page.index("toy-broken")  # course order, by number
    assert "Seeds are &lt;even&gt;" in page and "<even>" not in page
    assert "Parity &lt;i&gt;" in page
    assert page.count("data:image/png;base64,") == 1
    assert "failed: RuntimeError: the experiment broke" in page
    with RunStore(default_store_url(tmp_path)) as store:
        record = store.get_run(course.run_id)
        assert record.kind == "course" and record.summary["failed"] == ["toy-broken"]
        children = store.list_runs(parent_id=course.run_id)
    assert sorted(r.kind for r in children) == ["lesson", "lesson"]


def test_every_training_call_of_a_lesson_is_given_the_lessons_device() -> None:
    """``skier lesson run --device`` reaches every model: each ``fit(...)`` in a lesson module
    names ``device=`` (or forwards ``**settings`` that carry it), so none trains on ``fit``'s
    own default (``auto``: CUDA on a GPU machine)."""
    import ast

    import skier.lessons as package

    missing, seen = [], 0
    for path in sorted(Path(package.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "fit":
                seen += 1
                keywords = {k.arg for k in node.keywords}
                if "device" not in keywords and None not in keywords:
                    missing.append(f"{path.name}:{node.lineno}")
    assert seen >= 10  # the lessons train through fit()
    assert not missing, f"fit() without device= in {missing}"
