"""The store's run lists read as tables (notebooks), one short line (terminals) and DataFrames."""

from __future__ import annotations

import pytest

from skier.record import RunList, RunStore

HOSTILE = "<script>alert(1)</script>"


def _fill(store: RunStore) -> tuple[str, str]:
    first = store.create_run(HOSTILE, {"optim": {"lr": 0.1}}, None)
    store.finish_run(first, "completed", epochs_done=3, best_epoch=2, monitor="val_loss",
                     best_value=0.25, test_metrics={"test_loss": 0.3, "test_accuracy": 0.9},
                     duration_s=1.5)  # fmt: skip
    second = store.create_run("digits", {}, None, kind="cv", parent_id=first)
    return first, second


def test_list_runs_is_a_list_of_records_that_reads_as_a_table(sqlite_url: str) -> None:
    with RunStore(sqlite_url) as store:
        first, second = _fill(store)
        found = store.list_runs()
        children = store.descendants(first)
        named = store.find_runs("digits")
    assert isinstance(found, RunList) and isinstance(found, list)
    assert [r.id for r in found] == [second, first] and found == list(found)
    assert isinstance(children, RunList) and [r.id for r in children] == [second]
    assert isinstance(named, RunList) and [r.id for r in named] == [second]
    html = found._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<caption>2 runs</caption>" in html
    assert "<td>val_loss=0.25</td><td>test_loss=0.3, test_accuracy=0.9</td><td>1.5 s</td>" in html
    text = repr(found)
    assert "\n" not in text and text.startswith("RunList(2 runs: ") and len(text) < 200
    assert repr(found[0]) == f"RunRecord({second} 'digits': cv, running)"


def test_a_long_run_list_is_one_short_line(sqlite_url: str) -> None:
    with RunStore(sqlite_url) as store:
        for i in range(7):
            store.create_run(f"run {i}", {}, None)
        found = store.list_runs()
    assert repr(found).endswith(", … (4 more))") and len(repr(found)) < 200
    assert repr(RunList()) == "RunList(no runs)"


def test_run_list_to_pandas(sqlite_url: str) -> None:
    with RunStore(sqlite_url) as store:
        first, second = _fill(store)
        frame = store.list_runs().to_pandas()
    assert frame["id"].tolist() == [second, first]
    assert frame["name"].tolist() == ["digits", HOSTILE]
    row = frame.set_index("id").loc[first]
    assert row["best_value"] == pytest.approx(0.25) and row["test_accuracy"] == pytest.approx(0.9)
    assert row["epochs"] == 3 and row["kind"] == "train"
    assert frame.set_index("id").loc[second, "parent_id"] == first
    assert RunList().to_pandas().empty
