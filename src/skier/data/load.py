"""From a :class:`~skier.config.DataConfig` (or the user's own arrays) to a :class:`DataBundle`.

>>> bundle = load_data(DataConfig(name="digits", test_fraction=0.0))
>>> bundle.task, bundle.num_classes, len(bundle.train), len(bundle.val)
('classification', 10, 1437, 360)

The order is fixed so that nothing leaks from validation/test into training: load the raw
arrays → handle missing values → split → fit the preprocessor on the training split only →
transform every split → CPU tensors (the train loop moves them to the device).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from skier.config import DataConfig
from skier.data.builtin import digits
from skier.data.builtin import synthetic as make_synthetic
from skier.data.formats import _existing_file, as_inputs, read_csv, read_idx, read_npz
from skier.data.images import read_image_folder
from skier.data.preprocess import MissingPolicy, Preprocessor, check_no_missing, drop_missing
from skier.data.raw import RawData
from skier.data.splits import stratified_split
from skier.data.targets import encode_target
from skier.data.types import DataBundle, Split
from skier.data.usersets import dataset_factory, load_user_dataset
from skier.errors import DataError, problem

__all__ = [
    "as_split",
    "bundle_from_indices",
    "bundle_from_raw",
    "data_problems",
    "from_arrays",
    "load_data",
    "load_raw",
    "split_rows",
]


def _resolve(path: str, base_dir: Path | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or base_dir is None else Path(base_dir) / p


def _config_problems(config: DataConfig) -> list[str]:
    """Settings that cannot work together, all found before any file is read."""
    problems = []
    name = config.name
    needs_path = {"idx": "the IDX images file", "image_folder": "the folder of class subfolders"}
    if name in ("csv", "npz", "idx", "image_folder") and not config.path:
        problems.append(
            problem(
                "data.path",
                f"set for data.name {name!r} ({needs_path.get(name, 'the data file')})",
                config.path,
            )
        )
    if name == "idx" and not config.labels_path:
        problems.append(
            problem("data.labels_path", "set for data.name 'idx' (the IDX labels file)", None)
        )
    if name == "csv" and not config.target:
        problems.append(
            problem("data.target", "the name of the target column for data.name 'csv'", None)
        )
    if name not in ("csv", "npz", "dataset") and config.task == "multilabel":
        problems.append(problem("data.task", f"not 'multilabel' for data.name {name!r} (csv, "
                                "npz and dataset only)", config.task))  # fmt: skip
    if name != "csv" and isinstance(config.target, list):
        problems.append(problem("data.target", f"one name for data.name {name!r} (several "
                                "target columns: csv only)", config.target))  # fmt: skip
    for key in ("image_size", "channels"):
        if name != "image_folder" and getattr(config, key) is not None:
            problems.append(problem(f"data.{key}", f"unset for data.name {name!r} "
                                    "(image_folder only)", getattr(config, key)))  # fmt: skip
    if name in ("digits", "idx", "image_folder") and config.task == "regression":
        problems.append(
            problem(
                "data.task",
                f"'classification' or 'auto' for data.name {name!r} (its targets are labels)",
                config.task,
            )
        )
    if config.val_fraction + config.test_fraction >= 1.0:
        problems.append(
            problem(
                "data.val_fraction + data.test_fraction",
                "below 1 so that some training data is left",
                round(config.val_fraction + config.test_fraction, 6),
            )
        )
    return problems


_DATA_FILES = {"csv": "CSV file", "npz": ".npz file", "idx": "IDX images file"}


def data_problems(config: DataConfig, base_dir: str | Path | None = None) -> list[str]:
    """Everything :func:`load_data` would refuse before reading a byte, all at once: settings
    that cannot work together, then data files that do not exist (relative paths are read from
    ``base_dir``). An empty list means the loader will get as far as reading the files.

    >>> data_problems(DataConfig(name="csv", path="gone.csv", target="y"))[0].split(";")[0]
    'data.path must be an existing CSV file'
    """
    base = Path(base_dir) if base_dir is not None else None
    problems = _config_problems(config)
    files = [("data.path", config.path, _DATA_FILES.get(config.name))]
    if config.name == "idx":
        files.append(("data.labels_path", config.labels_path, "IDX labels file"))
    if config.name == "image_folder" and config.path:
        folder = _resolve(str(config.path), base)
        if not folder.is_dir():
            problems.append(problem("data.path", "an existing folder of class subfolders",
                                    str(folder), "Check the path; relative paths are read "
                                    "from the config file's folder."))  # fmt: skip
    if config.name == "dataset":  # importable and callable (it is called when data loads)
        try:
            dataset_factory(config)
        except DataError as exc:
            problems += exc.problems
    for field_name, value, what in files:
        if value and what:
            try:
                _existing_file(_resolve(str(value), base), field_name, what)
            except DataError as exc:
                problems += exc.problems
    return problems


def load_raw(config: DataConfig, *, base_dir: Path | None = None) -> RawData:
    """Only the loading step of :func:`load_data`: the whole data set as numpy arrays.

    >>> load_raw(DataConfig(name="digits")).x_num.shape
    (1797, 64)
    """
    problems = _config_problems(config)
    if config.name == "dataset":
        problems.append(
            problem("data.name", "an in-memory data set here (digits, synthetic, csv, npz, idx, "
                    "image_folder)", config.name, "A Dataset named by data.dataset trains with "
                    "skier train or fit(); cross-validation and tuning need arrays.")
        )  # fmt: skip
    if problems:
        raise DataError(problems)
    if config.name == "digits":
        return digits(as_images=config.as_images)
    if config.name == "synthetic":
        return make_synthetic(
            samples=config.samples,
            features=config.features,
            task=config.task,
            classes=config.classes,
            targets=config.targets,
            teacher_hidden=config.teacher_hidden,
            noise=config.noise,
            seed=config.seed,
        )
    # The checks above guarantee the paths and target these loaders need.
    path = _resolve(str(config.path), base_dir)
    if config.name == "csv":
        return read_csv(
            path,
            target=config.target if isinstance(config.target, list) else str(config.target),
            numeric_columns=config.numeric_columns,
            categorical_columns=config.categorical_columns,
            task=config.task,
            missing=config.missing,
        )
    if config.name == "npz":
        return read_npz(
            path,
            features_key=config.features_key,
            target=str(config.target or "y"),
            task=config.task,
        )
    if config.name == "image_folder":
        return read_image_folder(
            path, image_size=config.image_size, channels=config.channels, cache=config.cache
        )
    labels = _resolve(str(config.labels_path), base_dir)
    task = "classification" if config.task == "auto" else config.task
    return read_idx(path, labels, as_images=config.as_images, task=task)


def load_data(config: DataConfig, *, base_dir: Path | None = None) -> DataBundle:
    """Load, split and preprocess the data a config describes.

    Relative paths are read from ``base_dir`` (the CLI passes the config file's folder).
    Raises :class:`DataError` listing every problem found with the settings or the file.

    >>> bundle = load_data(DataConfig(name="csv", path="houses.csv", target="price"),
    ...                    base_dir=Path("examples"))  # doctest: +SKIP
    """
    if config.name == "dataset":  # the user's Dataset: read as training goes
        problems = _config_problems(config)
        if problems:
            raise DataError(problems)
        return load_user_dataset(config)
    raw = load_raw(config, base_dir=base_dir)
    return bundle_from_raw(
        raw,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        seed=config.seed,
        standardize=config.standardize,
        missing=config.missing,
    )


def from_arrays(
    x: np.ndarray,
    y: np.ndarray,
    task: Literal["auto", "classification", "regression"] = "auto",
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    standardize: bool = True,
) -> DataBundle:
    """Split and preprocess your own arrays: ``x`` is ``N x d`` (or ``N x C x H x W`` images).

    ``N x H x W`` inputs get a channel axis. Classification labels may be ints or strings.

    >>> x = np.random.default_rng(0).normal(size=(100, 3))
    >>> bundle = from_arrays(x, (x[:, 0] > 0).astype(int))
    >>> bundle.task, bundle.num_classes, len(bundle.train), len(bundle.val)
    ('classification', 2, 80, 20)
    """
    x_arr = as_inputs(np.asarray(x), "x")
    y_arr = np.asarray(y)
    if x_arr.shape[0] != y_arr.shape[0]:
        raise DataError(problem("y", f"as long as x ({x_arr.shape[0]} rows)", y_arr.shape[0]))
    y_enc, resolved, class_names = encode_target(y_arr, task, "y")
    names = [f"x{i}" for i in range(x_arr.shape[1])] if x_arr.ndim == 2 else []
    raw = RawData.numeric(x_arr, y_enc, names, class_names, resolved, "arrays", {})
    return bundle_from_raw(
        raw,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        standardize=standardize,
    )


def split_rows(raw: RawData, index: np.ndarray, prep: Preprocessor) -> Split | None:
    """The rows at ``index`` of ``raw``, transformed by the fitted ``prep``, as a :class:`Split`
    (``None`` for no rows): float32 inputs (plus long category codes), long class labels or
    float32 regression targets.

    >>> from skier.data.builtin import synthetic
    >>> raw = synthetic(samples=10, features=2, classes=2)
    >>> prep = Preprocessor(numeric_names=raw.feature_names).fit(raw.x_num, None)
    >>> split_rows(raw, np.arange(4), prep).input_shape
    (2,)
    """
    if index.size == 0:
        return None
    x_num, x_cat = prep.transform(raw.x_num[index], None if raw.x_cat is None else raw.x_cat[index])
    inputs = [torch.from_numpy(np.ascontiguousarray(x_num))]
    if x_cat is not None:
        inputs.append(torch.from_numpy(x_cat))
    dtype = np.int64 if raw.task == "classification" else np.float32
    return Split(tuple(inputs), torch.from_numpy(raw.y[index].astype(dtype)))


PAIR = "a Split or an (inputs, targets) pair of tensors or arrays"


def as_split(value: Any, *, name: str = "data", accepts: str = PAIR) -> Split:
    """The one conversion from what a user passes to a :class:`Split`.

    ``value`` is a Split (returned as it is) or an ``(inputs, targets)`` pair (a tuple or a
    list) of tensors, NumPy arrays or nested lists; ``inputs`` may be a tuple of them for a
    model with several inputs (``model(*inputs)``). Float inputs and targets become float32
    (NumPy's float64 would not match the model's weights) and 1-D float targets become
    ``N x 1``, as a regression model's output is. ``name`` is the argument's name in the
    errors; ``accepts`` says what the caller takes, for the error about anything else.

    >>> s = as_split((np.zeros((4, 3)), np.array([0, 1, 0, 1])), name="train")
    >>> s.inputs[0].dtype, s.targets.dtype, len(s)
    (torch.float32, torch.int64, 4)
    >>> as_split((np.zeros(4), np.zeros(4))).targets.shape
    torch.Size([4, 1])
    >>> as_split("data.csv", name="train")
    Traceback (most recent call last):
    ...
    skier.errors.DataError: train must be a Split or an (inputs, targets) pair of tensors or \
arrays; got str.
    """
    if isinstance(value, Split):
        return value
    if not (isinstance(value, tuple | list) and len(value) == 2):
        raise DataError(f"{name} must be {accepts}; got {type(value).__name__}.")
    x, y = value
    several = isinstance(x, tuple) and all(isinstance(t, torch.Tensor | np.ndarray) for t in x)
    fields = [f"{name} inputs[{i}]" for i in range(len(x))] if several else [f"{name} inputs"]
    inputs = tuple(_as_tensor(t, f) for t, f in zip(x if several else (x,), fields, strict=True))
    targets = _as_tensor(y, f"{name} targets")
    if targets.is_floating_point() and targets.dim() == 1:
        targets = targets.unsqueeze(1)
    try:
        return Split(inputs, targets)
    except ValueError as exc:  # rows that do not line up
        raise DataError(f"{name} {exc}") from None


def _as_tensor(value: Any, field: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        tensor = value
    else:
        try:
            array = np.asarray(value)
        except ValueError as exc:  # ragged nested lists
            raise DataError(
                f"{field} must be an array of numbers; got rows of different lengths ({exc}). "
                "Give every row the same length."
            ) from None
        if array.dtype.kind not in "biuf":
            raise DataError(
                problem(field, "a tensor or an array of numbers (bool, int or float)",
                        str(array.dtype),
                        "Encode strings first (skier.data.encode_target does targets).")
            )  # fmt: skip
        tensor = torch.from_numpy(array if array.ndim == 0 else np.ascontiguousarray(array))
    if tensor.dim() == 0:
        raise DataError(problem(field, "an array with one row per example", tensor.item()))
    return tensor.float() if tensor.is_floating_point() else tensor


def bundle_from_indices(
    raw: RawData,
    train_index: np.ndarray,
    val_index: np.ndarray,
    test_index: np.ndarray,
    *,
    split_info: Mapping[str, Any],
    standardize: bool = True,
    missing: MissingPolicy = "error",
    rows_dropped: int = 0,
) -> DataBundle:
    """Fit the preprocessing on the ``train_index`` rows, transform all three → :class:`DataBundle`.

    ``split_info`` is how the rows were chosen (fractions, seed, a fold's number): it goes to
    ``bundle.info["split"]`` for the record. ``load_data`` and each cross-validation fold build
    their bundles here.

    >>> from skier.data.builtin import synthetic
    >>> raw = synthetic(samples=10, features=2, classes=2)
    >>> bundle = bundle_from_indices(raw, np.arange(6), np.arange(6, 10), np.arange(0),
    ...                              split_info={"seed": 0})
    >>> len(bundle.train), len(bundle.val), bundle.test
    (6, 4, None)
    """
    prep = Preprocessor(
        standardize=standardize,
        missing=missing,
        numeric_names=raw.feature_names,
        categorical_names=raw.categorical_names,
    )
    prep.fit(raw.x_num[train_index], None if raw.x_cat is None else raw.x_cat[train_index])
    train = split_rows(raw, train_index, prep)
    if train is None:
        raise DataError(problem(f"{raw.name}: training split", "at least one row", 0))
    info: dict[str, Any] = {
        "name": raw.name,
        **raw.info,
        "task": raw.task,
        "sizes": {"train": len(train_index), "val": len(val_index), "test": len(test_index)},
        "split": dict(split_info),
        "missing": missing,
        "rows_dropped": rows_dropped,
        "preprocessing": prep.to_dict(),
    }
    classification = raw.task == "classification"
    return DataBundle(
        train=train,
        val=split_rows(raw, val_index, prep),
        test=split_rows(raw, test_index, prep),
        task=raw.task,
        num_classes=len(raw.class_names) if classification else None,
        num_targets=1 if classification else raw.num_targets,
        name=raw.name,
        feature_names=tuple(raw.feature_names),
        class_names=tuple(raw.class_names),
        categorical_cardinalities=tuple(prep.cardinalities),
        info=info,
    )


def bundle_from_raw(
    raw: RawData,
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    standardize: bool = True,
    missing: MissingPolicy = "error",
) -> DataBundle:
    """Missing values → split → fit on train → transform all → :class:`DataBundle`."""
    rows_dropped = 0
    if missing == "drop":
        # Dropping before splitting keeps the split sizes true to the fractions asked for.
        raw, rows_dropped = drop_missing(raw)
    elif missing == "error":
        # Checked on the whole set so the message counts every missing row, not just train's.
        check_no_missing(
            raw.x_num, raw.x_cat, raw.feature_names, raw.categorical_names, f" in {raw.name}"
        )
    if len(raw) == 0:
        raise DataError(problem(f"{raw.name}", "at least one row to train on", "0 rows"))

    stratify = raw.task == "classification"
    train_idx, val_idx, test_idx = stratified_split(
        raw.y, val_fraction, test_fraction, seed, stratify=stratify
    )
    split_info = {
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "seed": seed,
        "stratified": stratify,
    }
    return bundle_from_indices(
        raw,
        train_idx,
        val_idx,
        test_idx,
        split_info=split_info,
        standardize=standardize,
        missing=missing,
        rows_dropped=rows_dropped,
    )
