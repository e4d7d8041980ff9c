"""load_data and from_arrays: config -> split -> fit on train -> tensors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from skier.config import DataConfig
from skier.data import DataBundle, from_arrays, load_data
from skier.errors import DataError


def sizes(bundle: DataBundle) -> tuple[int, int, int]:
    return (
        len(bundle.train),
        0 if bundle.val is None else len(bundle.val),
        0 if bundle.test is None else len(bundle.test),
    )


def test_digits_bundle() -> None:
    bundle = load_data(DataConfig(name="digits"))
    assert bundle.task == "classification" and bundle.num_classes == 10 and bundle.output_size == 10
    assert sizes(bundle) == (1077, 360, 360) and sum(sizes(bundle)) == 1797
    x = bundle.train.inputs[0]
    assert len(bundle.train.inputs) == 1 and x.dtype == torch.float32 and x.device.type == "cpu"
    assert bundle.train.targets.dtype == torch.long
    # Fitted on train: train is standardised (constant border pixels stay 0).
    assert abs(float(x.mean())) < 1e-5
    stds = x.std(dim=0, unbiased=False)
    assert torch.all(((stds - 1).abs() < 1e-4) | (stds == 0))
    assert bundle.info["sizes"] == {"train": 1077, "val": 360, "test": 360}
    assert bundle.info["name"] == "digits" and bundle.name == "digits"
    json.dumps(bundle.info)  # the record stores it as JSON
    assert bundle.class_names == tuple(str(k) for k in range(10))


def test_digits_images_bundle() -> None:
    bundle = load_data(DataConfig(name="digits", as_images=True, test_fraction=0.0))
    assert bundle.input_shape == (1, 8, 8) and bundle.test is None
    assert bundle.info["preprocessing"]["scalar"] is True


def test_synthetic_bundles() -> None:
    cls = load_data(DataConfig(name="synthetic", samples=500, features=6, classes=4, seed=1))
    assert cls.input_shape == (6,) and cls.num_classes == 4 and sum(sizes(cls)) == 500
    reg = load_data(
        DataConfig(name="synthetic", task="regression", samples=300, features=4, targets=2)
    )
    assert reg.task == "regression" and reg.num_targets == 2 and reg.num_classes is None
    assert reg.train.targets.dtype == torch.float32 and reg.train.targets.shape[1] == 2


def test_same_seed_same_bundle() -> None:
    a = load_data(DataConfig(name="synthetic", samples=200, features=3, seed=4))
    b = load_data(DataConfig(name="synthetic", samples=200, features=3, seed=4))
    assert torch.equal(a.val.inputs[0], b.val.inputs[0])  # type: ignore[union-attr]


def city_csv(tmp_path: Path, n: int = 100) -> Path:
    rng = np.random.default_rng(0)
    # Mostly common cities, plus one-off towns that some split will not have seen in training.
    cities = [["paris", "rome", "oslo"][i % 3] if i % 4 else f"town{i}" for i in range(n)]
    lines = ["size,city,price"]
    for i, city in enumerate(cities):
        lines.append(f"{rng.normal(50, 10):.3f},{city},{2 * i + rng.normal():.3f}")
    path = tmp_path / "houses.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_bundle_with_categorical_column(tmp_path: Path) -> None:
    city_csv(tmp_path)
    config = DataConfig(name="csv", path="houses.csv", target="price")
    bundle = load_data(config, base_dir=tmp_path)  # relative path read from base_dir
    assert bundle.task == "regression" and bundle.num_targets == 1
    assert bundle.feature_names == ("size",)
    assert bundle.train.targets.shape == (len(bundle.train), 1)
    x_num, x_cat = bundle.train.inputs
    assert x_num.dtype == torch.float32 and x_cat.dtype == torch.long
    vocab = bundle.info["preprocessing"]["categories"][0]
    assert bundle.categorical_cardinalities == (len(vocab) + 1,)
    # Training categories are all known (codes >= 1); one-off towns in val/test get the reserved 0.
    assert int(x_cat.min()) >= 1
    assert bundle.val is not None and bundle.test is not None
    held_out = torch.cat([bundle.val.inputs[1], bundle.test.inputs[1]])
    assert int((held_out == 0).sum()) > 0
    assert int(held_out.max()) < bundle.categorical_cardinalities[0]


def test_csv_classification_target_names(tmp_path: Path) -> None:
    lines = ["a,b,label"] + [f"{i},{i % 5},{'yes' if i % 2 else 'no'}" for i in range(40)]
    (tmp_path / "c.csv").write_text("\n".join(lines) + "\n")
    bundle = load_data(DataConfig(name="csv", path=str(tmp_path / "c.csv"), target="label"))
    assert bundle.class_names == ("no", "yes") and bundle.num_classes == 2
    assert bundle.train.targets.dtype == torch.long


MISSING_CSV = "a,b,city,y\n" + "".join(
    f"{'' if i in (3, 7) else i},{i * 2},{'' if i == 5 else ['x', 'z'][i % 2]},{i % 2}\n"
    for i in range(40)
)


def test_missing_policy_error_counts_the_whole_file(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text(MISSING_CSV)
    config = DataConfig(name="csv", path="m.csv", target="y", test_fraction=0.0)
    with pytest.raises(DataError) as info:
        load_data(config, base_dir=tmp_path)
    problems = info.value.problems
    assert len(problems) == 2
    assert "column 'a' must be free of missing values; got '2 row(s) missing in m'" in problems[0]
    assert "column 'city'" in problems[1] and "1 row(s)" in problems[1]


def test_missing_policy_drop(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text(MISSING_CSV)
    config = DataConfig(name="csv", path="m.csv", target="y", missing="drop", test_fraction=0.0)
    bundle = load_data(config, base_dir=tmp_path)
    assert sum(sizes(bundle)) == 37 and bundle.info["rows_dropped"] == 3


def test_missing_policy_impute(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text(MISSING_CSV)
    config = DataConfig(name="csv", path="m.csv", target="y", missing="impute", test_fraction=0.0)
    bundle = load_data(config, base_dir=tmp_path)
    assert sum(sizes(bundle)) == 40
    splits = [bundle.train, bundle.val]
    x_num = torch.cat([s.inputs[0] for s in splits if s is not None])
    x_cat = torch.cat([s.inputs[1] for s in splits if s is not None])
    assert not torch.isnan(x_num).any()
    assert int((x_cat == 0).sum()) == 1  # the missing city takes the reserved code


def test_config_problems_reported_together() -> None:
    with pytest.raises(DataError) as info:
        load_data(DataConfig(name="csv"))
    text = str(info.value)
    assert "data.path must be set for data.name 'csv'" in text
    assert "data.target must be the name of the target column" in text
    with pytest.raises(DataError, match=r"data\.labels_path must be set for data\.name 'idx'"):
        load_data(DataConfig(name="idx", path="x.idx"))
    with pytest.raises(DataError, match=r"data\.task must be 'classification' or 'auto'"):
        load_data(DataConfig(name="digits", task="regression"))
    with pytest.raises(
        DataError, match=r"data\.val_fraction \+ data\.test_fraction must be below 1"
    ):
        load_data(DataConfig(name="digits", val_fraction=0.5, test_fraction=0.5))


def test_missing_file_named_with_base_dir(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"data\.path must be an existing \.npz file; got '.*gone\.npz'"
    ):
        load_data(DataConfig(name="npz", path="gone.npz"), base_dir=tmp_path)


def test_npz_bundle_task_mismatch(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((20, 2)), y=np.array(["a", "b"] * 10))
    config = DataConfig(name="npz", path="d.npz", task="regression")
    with pytest.raises(DataError, match=r"must be numeric for task 'regression'"):
        load_data(config, base_dir=tmp_path)
    bundle = load_data(config.model_copy(update={"task": "auto"}), base_dir=tmp_path)
    assert bundle.num_classes == 2


def test_idx_bundle(tmp_path: Path) -> None:
    import gzip
    import struct

    images = np.random.default_rng(0).integers(0, 256, size=(30, 5, 5)).astype(np.uint8)
    labels = (np.arange(30) % 3).astype(np.uint8)
    img = struct.pack(">BBBBIII", 0, 0, 8, 3, 30, 5, 5) + images.tobytes()
    lab = struct.pack(">BBBBI", 0, 0, 8, 1, 30) + labels.tobytes()
    (tmp_path / "img.gz").write_bytes(gzip.compress(img))
    (tmp_path / "lab").write_bytes(lab)
    config = DataConfig(name="idx", path="img.gz", labels_path="lab", as_images=True)
    bundle = load_data(config, base_dir=tmp_path)
    assert bundle.input_shape == (1, 5, 5) and bundle.num_classes == 3


def test_from_arrays() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(100, 4))
    bundle = from_arrays(x, (x[:, 0] > 5).astype(int), seed=1)
    assert sizes(bundle) == (80, 20, 0) and bundle.num_classes == 2
    assert abs(float(bundle.train.inputs[0].mean())) < 1e-5
    reg = from_arrays(x, x.sum(axis=1), standardize=False, test_fraction=0.1)
    assert reg.task == "regression" and sizes(reg) == (70, 20, 10)
    assert reg.train.targets.shape == (70, 1)
    assert float(reg.train.inputs[0].mean()) > 3.0  # left as it was


def test_from_arrays_errors() -> None:
    with pytest.raises(DataError, match=r"y must be as long as x \(3 rows\); got 2"):
        from_arrays(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(DataError, match=r"x must be a numeric array; got '<U1'"):
        from_arrays(np.array([["a"], ["b"]]), np.zeros(2))


def test_from_arrays_images_and_string_labels() -> None:
    x = np.random.default_rng(0).uniform(0, 255, size=(40, 6, 6)).astype(np.uint8)
    bundle = from_arrays(x, np.array(["cat", "dog"] * 20))
    assert bundle.input_shape == (1, 6, 6) and bundle.class_names == ("cat", "dog")
