"""A DataBundle and its splits show sizes, shapes, classes and preprocessing, never tensors."""

from __future__ import annotations

import torch

from skier.data.types import DataBundle, Split


def _bundle(name: str = "digits") -> DataBundle:
    train = Split((torch.zeros(8, 3),), torch.zeros(8, dtype=torch.long))
    test = Split(
        (torch.zeros(2, 3), torch.zeros(2, 1, dtype=torch.long)), torch.zeros(2, dtype=torch.long)
    )
    return DataBundle(
        train, None, test, "classification", num_classes=3, name=name,
        feature_names=[f"f{i}" for i in range(12)], class_names=["a", "b", "<c>"],
        info={"source": "test", "split": {"seed": 0},
              "preprocessing": {"standardize": True, "missing": "error"}},
    )  # fmt: skip


def test_reprs_are_short_and_hold_no_tensor() -> None:
    text = repr(_bundle())
    assert text == (
        "DataBundle('digits': classification, 3 classes; train 8, test 2; inputs (3,) float32)"
    )
    assert (
        repr(_bundle().test) == "Split(2 examples; inputs (3,) float32 + (1,) int64; targets int64)"
    )
    assert "tensor" not in text


def test_html_tables_the_splits_and_the_preprocessing() -> None:
    page = _bundle()._repr_html_()
    assert "<td>train</td><td>8</td><td>(3,) float32</td><td>int64</td>" in page
    assert "<td>val</td>" not in page  # no validation split
    assert "<td>preprocessing</td><td>standardize True, missing error</td>" in page
    assert "f9, … (2 more)" in page and "f10" not in page
    assert "tensor" not in page


def test_html_escapes_names() -> None:
    page = _bundle(name="<script>x</script>")._repr_html_()
    assert "<script>" not in page and "<c>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "&lt;c&gt;" in page
