"""Binary and multi-label CSV targets, through load_data and fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from skier.config import DataConfig
from skier.data import load_data
from skier.data.formats import read_csv
from skier.data.load import data_problems
from skier.data.targets import encode_labels
from skier.errors import DataError
from skier.train.loop import fit


def _csv(tmp_path: Path, rows: int = 60) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 3)).round(3)
    lines = ["a,b,c,red,round,big,sold"]
    for i, row in enumerate(x):
        labels = [int(row[0] > 0), "yes" if row[1] > 0 else "no", str(row[2] > 0).lower()]
        lines.append(",".join(map(str, [*row, *labels, ["n", "y"][i % 2]])))
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_several_target_columns_are_a_multilabel_task(tmp_path: Path) -> None:
    path = _csv(tmp_path)
    raw = read_csv(
        path,
        target=["red", "round", "big"],
        numeric_columns=["a", "b", "c"],
        categorical_columns=[],
    )
    assert raw.task == "multilabel" and raw.class_names == ["red", "round", "big"]
    assert raw.y.dtype == np.float32 and raw.y.shape == (60, 3)
    np.testing.assert_array_equal(raw.y[:, 0], (raw.x_num[:, 0] > 0).astype(np.float32))
    columns = {"numeric_columns": ["a", "b", "c"], "categorical_columns": []}
    bundle = load_data(
        DataConfig(name="csv", path=str(path), target=["red", "round", "big"], **columns)
    )
    assert bundle.task == "multilabel" and bundle.output_size == 3
    assert "3 labels" in repr(bundle)
    torch.manual_seed(0)
    result = fit(torch.nn.Linear(3, 3), bundle, epochs=2, progress="off", metrics=["f1_macro"])
    assert result.task == "multilabel" and "val_f1_macro" in result.history.rows[-1]


def test_a_binary_column_trains_with_one_logit(tmp_path: Path) -> None:
    columns = {"numeric_columns": ["a", "b", "c"], "categorical_columns": []}
    bundle = load_data(DataConfig(name="csv", path=str(_csv(tmp_path)), target="sold", **columns))
    assert bundle.task == "classification" and bundle.class_names == ("n", "y")
    result = fit(torch.nn.Linear(3, 1), bundle, epochs=1, progress="off",
                 loss="binary_cross_entropy", metrics=["auroc"])  # fmt: skip
    assert 0.0 <= result.history.rows[-1]["val_auroc"] <= 1.0


def test_labels_that_are_not_zero_or_one_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"0/1 labels for a multi-label task.*\['2', 'maybe'\]"):
        encode_labels(np.array([[0, 2], [1, "maybe"]], dtype=object), "y")
    path = _csv(tmp_path)
    with pytest.raises(DataError, match=r"data\.target.*'nope'"):
        read_csv(path, target=["red", "nope"])
    problems = data_problems(DataConfig(name="digits", task="multilabel"))
    assert any("csv, npz and dataset only" in p for p in problems)
