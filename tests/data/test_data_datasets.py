"""Raw loaders: digits, the synthetic teacher, CSV, npz and IDX files."""

from __future__ import annotations

import gzip
import os
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from skier.config import DataConfig
from skier.data import (
    RawData,
    digits,
    encode_target,
    load_data,
    read_csv,
    read_idx,
    read_npz,
    synthetic,
)
from skier.errors import DataError

# --- digits and synthetic -----------------------------------------------------------------------


def test_digits_flat_and_image_layouts() -> None:
    flat = digits()
    images = digits(as_images=True)
    assert flat.x_num.shape == (1797, 64) and flat.x_num.dtype == np.float32
    assert images.x_num.shape == (1797, 1, 8, 8)
    np.testing.assert_array_equal(images.x_num.reshape(1797, 64), flat.x_num)
    assert flat.y.dtype == np.int64 and set(flat.y.tolist()) == set(range(10))
    assert flat.class_names == [str(k) for k in range(10)]
    assert flat.task == "classification" and flat.x_cat is None
    assert len(flat.feature_names) == 64


def test_synthetic_is_deterministic_by_seed() -> None:
    a = synthetic(samples=300, features=7, classes=4, seed=3)
    b = synthetic(samples=300, features=7, classes=4, seed=3)
    c = synthetic(samples=300, features=7, classes=4, seed=4)
    np.testing.assert_array_equal(a.x_num, b.x_num)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x_num, c.x_num)


@pytest.mark.parametrize(("features", "classes"), [(20, 10), (3, 10), (2, 3)])
def test_synthetic_classes_are_roughly_balanced(features: int, classes: int) -> None:
    raw = synthetic(samples=3000, features=features, classes=classes, seed=0)
    counts = np.bincount(raw.y, minlength=classes)
    assert raw.class_names == [str(k) for k in range(classes)]
    assert counts.min() > 0.7 * 3000 / classes
    assert counts.max() < 1.3 * 3000 / classes


def test_synthetic_mnist_sized_runs() -> None:
    start = time.perf_counter()
    raw = synthetic(samples=60_000, features=784, classes=10, seed=0)
    elapsed = time.perf_counter() - start
    assert raw.x_num.shape == (60_000, 784) and raw.x_num.dtype == np.float32
    assert raw.y.shape == (60_000,)
    # Not a timed assertion; printed for the curious (-s).
    print(f"synthetic 60000 x 784 in {elapsed:.2f} s")


def test_synthetic_regression_with_noise() -> None:
    clean = synthetic(samples=2000, features=5, task="regression", targets=3, seed=2)
    noisy = synthetic(samples=2000, features=5, task="regression", targets=3, noise=0.5, seed=2)
    assert clean.task == "regression" and clean.y.shape == (2000, 3)
    assert clean.y.dtype == np.float32 and clean.class_names == []
    np.testing.assert_allclose(clean.y.std(axis=0), 1.0, atol=1e-3)
    residual = noisy.y - clean.y
    assert 0.4 < float(residual.std()) < 0.6


def test_synthetic_rejects_bad_settings_all_at_once() -> None:
    with pytest.raises(DataError, match=r"2 problems:[\s\S]*samples[\s\S]*noise"):
        synthetic(samples=0, noise=-1.0)


# --- targets --------------------------------------------------------------------------------------


def test_encode_target_auto_rules() -> None:
    y, task, names = encode_target(np.array([3, 1, 3, 10]))
    assert task == "classification" and names == ["1", "3", "10"] and y.tolist() == [1, 0, 1, 2]
    y, task, _ = encode_target(np.array([0.5, 1.5, 2.0]))
    assert task == "regression" and y.shape == (3, 1) and y.dtype == np.float32
    _, task, _ = encode_target(np.arange(100))
    assert task == "regression"  # integer-valued but too many distinct values
    y, task, names = encode_target(np.array([True, False, True]))
    assert task == "classification" and names == ["False", "True"]


def test_encode_target_mismatched_task_is_an_error() -> None:
    with pytest.raises(DataError, match=r"must be numeric for task 'regression'.*'cat'"):
        encode_target(np.array(["cat", "dog"]), "regression")
    with pytest.raises(DataError, match=r"integer-valued class labels.*0\.5"):
        encode_target(np.array([0.5, 1.0]), "classification")
    with pytest.raises(DataError, match="at least 2 classes"):
        encode_target(np.array([1, 1, 1]), "classification")


# --- CSV ----------------------------------------------------------------------------------------

CSV = """age,city,income,member,label
30,paris,1.5,true,yes
41,london,2.5,false,no
52,paris,3.5,true,yes
23,rome,0.5,false,no
"""


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_detects_numeric_and_categorical_columns(tmp_path: Path) -> None:
    raw = read_csv(write(tmp_path, CSV), target="label")
    assert raw.feature_names == ["age", "income"]
    assert raw.categorical_names == ["city", "member"]
    assert raw.x_num.dtype == np.float32 and raw.x_num.shape == (4, 2)
    assert raw.x_cat is not None and raw.x_cat.shape == (4, 2)
    assert raw.task == "classification" and raw.class_names == ["no", "yes"]
    assert raw.y.tolist() == [1, 0, 1, 0]
    assert raw.name == "data"


def test_csv_declared_columns_win_and_others_are_ignored(tmp_path: Path) -> None:
    raw = read_csv(
        write(tmp_path, CSV),
        target="income",
        numeric_columns=["age"],
        categorical_columns=["city"],
    )
    assert raw.feature_names == ["age"] and raw.categorical_names == ["city"]
    assert raw.task == "regression" and raw.y.shape == (4, 1)
    assert raw.info["ignored_columns"] == ["member", "label"]


def test_csv_declared_categorical_numbers(tmp_path: Path) -> None:
    raw = read_csv(write(tmp_path, CSV), target="label", categorical_columns=["age"])
    # Each kind is declared or detected on its own: declaring the categoricals means only those.
    assert raw.categorical_names == ["age"]
    assert raw.feature_names == ["income"]
    assert raw.info["ignored_columns"] == ["city", "member"]


def test_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"data\.path must be an existing CSV file; got '.*nope\.csv'"
    ):
        read_csv(tmp_path / "nope.csv", target="label")


def test_csv_missing_target_lists_columns(tmp_path: Path) -> None:
    path = write(tmp_path, CSV)
    with pytest.raises(
        DataError, match=r"data\.csv: data\.target .* got 'lable'\. Did you mean 'label'"
    ):
        read_csv(path, target="lable")
    with pytest.raises(DataError, match=r"got 'zzz'\. Columns: age, city, income, member, label"):
        read_csv(path, target="zzz")


def test_csv_every_problem_reported_at_once(tmp_path: Path) -> None:
    text = "age,city,income,label\n30,paris,1.5,a\nold,rome,x,b\n40,rome,n/a?,a\n"
    with pytest.raises(DataError) as info:
        read_csv(
            write(tmp_path, text),
            target="labl",
            numeric_columns=["age", "income", "ghost"],
        )
    problems = info.value.problems
    assert len(problems) == 4
    assert "data.target" in problems[0]
    assert "'ghost'" in problems[1]
    assert "column 'age' (declared numeric)" in problems[2] and "['old']" in problems[2]
    assert "line(s) [3]" in problems[2]
    assert "column 'income'" in problems[3] and "2 non-numeric" in problems[3]
    assert "['x', 'n/a?']" in problems[3]


def test_csv_declared_column_twice_or_target(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"disjoint from data\.categorical_columns"):
        read_csv(
            write(tmp_path, CSV),
            target="label",
            numeric_columns=["age"],
            categorical_columns=["age"],
        )
    with pytest.raises(DataError, match="free of the target column"):
        read_csv(write(tmp_path, CSV), target="label", categorical_columns=["label"])


def test_csv_missing_targets(tmp_path: Path) -> None:
    path = write(tmp_path, "a,label\n1,x\n2,\n3,y\n4,x\n")
    with pytest.raises(
        DataError, match=r"target column 'label' must be free of missing values.*line\(s\) \[3\]"
    ):
        read_csv(path, target="label")
    raw = read_csv(path, target="label", missing="drop")
    assert len(raw) == 3 and raw.info["rows_without_target_dropped"] == 1


def test_csv_task_mismatch(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"column 'label'.* must be numeric for task 'regression'"):
        read_csv(write(tmp_path, CSV), target="label", task="regression")


def test_csv_without_inputs_or_unreadable(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="at least one column besides the target"):
        read_csv(write(tmp_path, "label\n1\n2\n"), target="label")
    with pytest.raises(DataError, match="a readable CSV file"):
        read_csv(write(tmp_path, ""), target="label")


# --- npz ----------------------------------------------------------------------------------------


def test_npz_round_trip(tmp_path: Path) -> None:
    x = np.arange(30, dtype=np.float64).reshape(10, 3)
    y = np.array(["a", "b"] * 5)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    raw = read_npz(tmp_path / "d.npz")
    assert raw.x_num.dtype == np.float32 and raw.x_num.shape == (10, 3)
    assert raw.class_names == ["a", "b"] and raw.y.tolist() == [0, 1] * 5


def test_npz_images_get_a_channel_axis(tmp_path: Path) -> None:
    np.savez(tmp_path / "img.npz", pixels=np.zeros((6, 5, 5)), t=np.linspace(0, 1, 6))
    raw = read_npz(tmp_path / "img.npz", features_key="pixels", target="t")
    assert raw.x_num.shape == (6, 1, 5, 5) and raw.task == "regression"


def test_npz_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"an existing \.npz file"):
        read_npz(tmp_path / "none.npz")
    np.savez(tmp_path / "d.npz", inputs=np.zeros((4, 2)), y=np.zeros(3))
    with pytest.raises(DataError, match=r"data\.features_key must be a key of d\.npz; got 'x'"):
        read_npz(tmp_path / "d.npz")
    with pytest.raises(DataError, match=r"as long as 'inputs' \(4 rows\); got '3 rows'"):
        read_npz(tmp_path / "d.npz", features_key="inputs")
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=r"a \.npz file of numeric arrays"):
        read_npz(tmp_path / "bad.npz")


class _Canary:
    """Unpickling one makes a folder: whether the loader ran a pickle shows on disk."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("key", ["x", "y"])
def test_npz_object_arrays_are_one_data_error_and_never_unpickled(tmp_path: Path, key: str) -> None:
    """docs/reliability.md: object arrays are never unpickled (``allow_pickle=False``)."""
    marker = tmp_path / "unpickled"
    arrays: dict[str, np.ndarray] = {"x": np.zeros((3, 2)), "y": np.zeros(3)}
    arrays[key] = np.array([{"a": 1}, _Canary(marker), {"c": [3]}], dtype=object)
    np.savez(tmp_path / "objects.npz", **arrays)  # type: ignore[arg-type]
    with pytest.raises(DataError) as info:
        load_data(DataConfig(name="npz", path=str(tmp_path / "objects.npz")))
    assert str(info.value) == (
        f"data.path must be a .npz file of numeric arrays; got {str(tmp_path / 'objects.npz')!r}."
        " Object arrays cannot be loaded when allow_pickle=False"
    )
    assert not marker.exists(), "the loader unpickled an object array"


# --- IDX ----------------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, code: int = 0x08) -> Path:
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    dtype = {0x08: ">u1", 0x0D: ">f4"}[code]
    data = header + array.astype(dtype).tobytes()
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


@pytest.fixture
def idx_pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(12, 4, 3)), np.arange(12) % 3


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(
    tmp_path: Path, idx_pair: tuple[np.ndarray, np.ndarray], suffix: str
) -> None:
    images, labels = idx_pair
    img = write_idx(tmp_path / f"images-idx3-ubyte{suffix}", images)
    lab = write_idx(tmp_path / f"labels-idx1-ubyte{suffix}", labels)
    flat = read_idx(img, lab)
    assert flat.x_num.shape == (12, 12) and flat.x_num.dtype == np.float32
    np.testing.assert_array_equal(flat.x_num, images.reshape(12, 12))
    assert flat.feature_names[:2] == ["pixel_0_0", "pixel_0_1"]
    assert flat.y.tolist() == labels.tolist() and flat.class_names == ["0", "1", "2"]
    as_images = read_idx(img, lab, as_images=True)
    assert as_images.x_num.shape == (12, 1, 4, 3)


def test_idx_float_type_code(tmp_path: Path) -> None:
    images = np.linspace(0, 1, 24).reshape(2, 3, 4)
    img = write_idx(tmp_path / "f.idx", images, code=0x0D)
    lab = write_idx(tmp_path / "l.idx", np.array([0, 1]))
    np.testing.assert_allclose(read_idx(img, lab).x_num, images.reshape(2, 12), rtol=1e-6)


def test_idx_errors(tmp_path: Path, idx_pair: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = idx_pair
    img = write_idx(tmp_path / "img.idx", images)
    with pytest.raises(DataError, match=r"data\.labels_path must be an existing IDX labels file"):
        read_idx(img, tmp_path / "missing.idx")
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x08\x03\x00\x01" + b"\x00" * 20)
    with pytest.raises(DataError, match=r"magic number.*got '08030001'"):
        read_idx(img, bad)
    short = write_idx(tmp_path / "short.idx", labels[:5])
    with pytest.raises(DataError, match=r"as many labels as img\.idx has images \(12\); got 5"):
        read_idx(img, short)
    truncated = tmp_path / "trunc.idx"
    truncated.write_bytes(img.read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(truncated, write_idx(tmp_path / "l.idx", labels))


def test_raw_data_take() -> None:
    raw = RawData(
        np.arange(6, dtype=np.float32).reshape(3, 2),
        np.array([["a"], ["b"], ["c"]], dtype=object),
        np.array([0, 1, 0]),
        ["p", "q"],
        ["r"],
        ["n", "y"],
        "classification",
    )
    sub = raw.take(np.array([True, False, True]))
    assert len(sub) == 2 and sub.x_cat is not None and sub.x_cat[:, 0].tolist() == ["a", "c"]


def test_csv_value_beyond_float32_is_one_error_naming_the_column(tmp_path: Path) -> None:
    # found by hypothesis: 3.4028235677973366e+38 overflowed the float32 cast into an infinity
    path = tmp_path / "big.csv"
    path.write_text("a,b,y\n0,1,0\n0,3.4028235677973366e+38,1\n1,2,0\n")
    with pytest.raises(DataError, match=r"big\.csv: column 'b' must be within float32 range"):
        read_csv(path, target="y")


def test_digits_are_scikit_learns_digits() -> None:
    # skier reads scikit-learn's digits file itself (no sklearn import at start-up): the
    # same numbers, labels and names as load_digits.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    raw = digits()
    np.testing.assert_array_equal(raw.x_num, bunch.data.astype(np.float32))
    np.testing.assert_array_equal(raw.y, bunch.target)
    assert raw.x_num.dtype == np.float32 and raw.y.dtype == np.int64
    assert raw.feature_names == list(bunch.feature_names)
    assert raw.class_names == [str(c) for c in bunch.target_names]
