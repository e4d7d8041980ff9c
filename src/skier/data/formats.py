"""File formats: local CSV, ``.npz`` and MNIST-style IDX files read into :class:`RawData`.

>>> as_inputs(np.zeros(3, dtype=np.int64), "x").shape
(3, 1)
"""

from __future__ import annotations

import gzip
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from skier.data.raw import RawData
from skier.data.targets import TaskChoice, encode_labels, encode_target, examples
from skier.errors import DataError, did_you_mean, problem

if TYPE_CHECKING:  # pandas is slow to import: only a CSV file needs it
    import pandas as pd

__all__ = ["as_inputs", "read_csv", "read_idx", "read_npz"]


def _existing_file(path: str | Path, field: str, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        hint = "Check the path; relative paths are read from the config file's folder."
        raise DataError(problem(field, f"an existing {what}", str(p), hint))
    return p


def _missing_column(field: str, name: str, columns: Sequence[str], path: Path) -> str:
    hint = did_you_mean(name, columns) or f" Columns: {', '.join(map(str, columns))}."
    return problem(f"{path.name}: {field}", "a column of the file", name, hint.strip())


def _bad_numeric_values(col: pd.Series, name: str, path: Path) -> str | None:
    """The problem with a declared numeric column's non-numeric entries, or ``None`` if clean."""
    import pandas as pd

    converted = pd.to_numeric(col, errors="coerce")
    bad = converted.isna() & col.notna()
    if not bad.any():
        return None
    # Data row i is line i + 2 of the file (line 1 is the header).
    lines = [int(i) + 2 for i in np.flatnonzero(bad.to_numpy())[:3]]
    return problem(
        f"{path.name}: column {name!r} (declared numeric)",
        "numbers only",
        examples(col[bad].to_numpy()),
        f"{int(bad.sum())} non-numeric value(s), first on line(s) {lines}. "
        "Fix the file or declare the column in data.categorical_columns.",
    )


def _is_numeric_dtype(col: pd.Series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def read_csv(
    path: str | Path,
    target: str | Sequence[str],
    numeric_columns: Sequence[str] | None = None,
    categorical_columns: Sequence[str] | None = None,
    task: TaskChoice = "auto",
    missing: Literal["error", "drop", "impute"] = "error",
) -> RawData:
    """Read a CSV file with a header row; one column is the target, others are inputs.

    Several target columns of 0/1 labels (``target=["a", "b"]``, or ``task="multilabel"``)
    make a multi-label task: float32 ``N x L`` targets named by their columns.

    Each kind of column is declared or, when ``None``, detected among the columns not declared
    as the other kind: numeric dtypes are numeric, text and bool columns are categorical.
    Columns in neither list are ignored. Missing inputs stay NaN/None for the preprocessor;
    rows with a missing *target* are dropped when ``missing="drop"`` and are an error otherwise
    (a target cannot be imputed). Every problem found is reported in one :class:`DataError`.

    >>> raw = read_csv("houses.csv", target="price", categorical_columns=["zip"])  # doctest: +SKIP
    """
    import pandas as pd  # slow to import: only when a CSV file is read

    p = _existing_file(path, "data.path", "CSV file")
    try:
        df = pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(problem("data.path", "a readable CSV file", str(p), str(exc))) from None
    columns = [str(c) for c in df.columns]
    df.columns = pd.Index(columns)

    problems: list[str] = []
    targets = [target] if isinstance(target, str) else list(target)
    problems += [_missing_column("data.target", t, columns, p) for t in targets if t not in columns]
    declared: dict[str, list[str]] = {}
    for setting, names in (
        ("data.numeric_columns", numeric_columns),
        ("data.categorical_columns", categorical_columns),
    ):
        if names is None:
            continue
        declared[setting] = list(names)
        for name in names:
            if name not in columns:
                problems.append(_missing_column(setting, name, columns, p))
            elif name in targets:
                problems.append(problem(setting, "free of the target column", name))
    both = set(declared.get("data.numeric_columns", [])) & set(
        declared.get("data.categorical_columns", [])
    )
    for name in sorted(both):
        problems.append(
            problem("data.numeric_columns", "disjoint from data.categorical_columns", name)
        )
    for name in numeric_columns or []:
        if name in columns and name not in targets and not _is_numeric_dtype(df[name]):
            bad = _bad_numeric_values(df[name], name, p)
            if bad is not None:
                problems.append(bad)
    if problems:
        raise DataError(problems)

    inputs = [c for c in columns if c not in targets]
    if numeric_columns is not None:
        num = list(numeric_columns)
    else:
        taken = set(categorical_columns or [])
        num = [c for c in inputs if c not in taken and _is_numeric_dtype(df[c])]
    if categorical_columns is not None:
        cat = list(categorical_columns)
    else:
        cat = [c for c in inputs if c not in num and not _is_numeric_dtype(df[c])]
    if not num and not cat:
        raise DataError(
            problem(f"{p.name}: input columns", "at least one column besides the target", columns)
        )
    ignored = [c for c in inputs if c not in num and c not in cat]

    # Rows without a target cannot be trained on or imputed.
    no_target = df[targets].isna().any(axis=1).to_numpy()
    rows_dropped = 0
    if no_target.any():
        if missing != "drop":
            lines = [int(i) + 2 for i in np.flatnonzero(no_target)[:3]]
            raise DataError(
                problem(
                    f"{p.name}: target column {target!r}",
                    "free of missing values",
                    f"{int(no_target.sum())} missing (line(s) {lines})",
                    "Set data.missing: drop to drop those rows.",
                )
            )
        rows_dropped = int(no_target.sum())
        df = df.loc[~no_target].reset_index(drop=True)

    x_num = np.empty((len(df), len(num)), dtype=np.float32)
    largest = float(np.finfo(np.float32).max)
    for j, c in enumerate(num):
        values = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64)
        beyond = np.flatnonzero(np.isfinite(values) & (np.abs(values) > largest))
        if beyond.size:  # float32 would turn it into an infinity
            i = int(beyond[0])
            raise DataError(
                problem(
                    f"{p.name}: column {c!r}",
                    f"within float32 range (|x| <= {largest:.4g})",
                    f"{values[i]!r} (data row {i + 1})",
                )
            )
        x_num[:, j] = values
    x_cat = df[cat].to_numpy(dtype=object) if cat else None
    if len(targets) > 1 or task == "multilabel":
        y, resolved, class_names = encode_labels(df[targets], f"{p.name}: columns {targets}")
    else:
        y, resolved, class_names = encode_target(
            df[targets[0]], task, f"{p.name}: column {targets[0]!r}"
        )
    return RawData(
        x_num=x_num,
        x_cat=x_cat,
        y=y,
        feature_names=num,
        categorical_names=cat,
        class_names=class_names,
        task=resolved,
        name=p.stem,
        info={
            "source": str(p),
            "target": target,
            "ignored_columns": ignored,
            "rows_without_target_dropped": rows_dropped,
        },
    )


def as_inputs(x: np.ndarray, field: str) -> np.ndarray:
    """Numeric float32 inputs: ``N`` becomes ``N x 1``, ``N x H x W`` gets a channel axis.

    >>> as_inputs(np.zeros((5, 8, 8), dtype=np.uint8), "x").shape
    (5, 1, 8, 8)
    """
    if x.dtype.kind not in "iufb":
        raise DataError(problem(field, "a numeric array", str(x.dtype)))
    x = x.astype(np.float32, copy=False)
    if x.ndim == 1:
        return x.reshape(-1, 1)
    if x.ndim == 3:
        return x[:, None, :, :]
    if x.ndim in (2, 4):
        return x
    raise DataError(problem(field, "an array of 1 to 4 dimensions", x.shape))


def read_npz(
    path: str | Path, features_key: str = "x", target: str = "y", task: TaskChoice = "auto"
) -> RawData:
    """Read inputs and targets from a ``.npz`` file (``np.savez``).

    Inputs of shape ``N x d`` are a table; ``N x H x W`` become ``N x 1 x H x W`` images and
    ``N x C x H x W`` stay as they are.

    >>> raw = read_npz("data.npz", features_key="x", target="y")  # doctest: +SKIP
    """
    p = _existing_file(path, "data.path", ".npz file")
    try:
        with np.load(p, allow_pickle=False) as archive:
            keys = list(archive.files)
            problems = [
                problem(
                    field,
                    f"a key of {p.name}",
                    key,
                    did_you_mean(key, keys).strip() or f"Keys: {', '.join(keys)}.",
                )
                for field, key in (("data.features_key", features_key), ("data.target", target))
                if key not in keys
            ]
            if problems:
                raise DataError(problems)
            x = archive[features_key]
            y = archive[target]
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        # allow_pickle=False refuses object arrays: a deliberate limit, never unpickle data.
        raise DataError(
            problem("data.path", "a .npz file of numeric arrays", str(p), str(exc))
        ) from None
    x = as_inputs(x, f"{p.name}[{features_key!r}]")
    if y.ndim == 0:
        raise DataError(
            problem(f"{p.name}[{target!r}]", "an array with one value per example", y.tolist())
        )
    if x.shape[0] != y.shape[0]:
        raise DataError(
            problem(
                f"{p.name}[{target!r}]",
                f"as long as {features_key!r} ({x.shape[0]} rows)",
                f"{y.shape[0]} rows",
            )
        )
    y_enc, resolved, class_names = encode_target(y, task, f"{p.name}[{target!r}]")
    names = [f"x{i}" for i in range(x.shape[1])] if x.ndim == 2 else []
    return RawData.numeric(x, y_enc, names, class_names, resolved, p.stem, {"source": str(p)})


# IDX type codes (see http://yann.lecun.com/exdb/mnist/): all multi-byte values are big-endian.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_idx_array(path: Path, field: str) -> np.ndarray:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(problem(field, "a readable IDX file", str(path), str(exc))) from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(
            problem(
                field,
                "an IDX file (magic number 0x0000 + type code + dimensions)",
                data[:4].hex(),
                f"{path.name} is not in MNIST's IDX format.",
            )
        )
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DataError(problem(field, "an IDX file with a complete header", str(path)))
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            problem(
                field,
                f"{expected} bytes of data for shape {shape}",
                len(data) - header,
                f"{path.name} is truncated or corrupt.",
            )
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def read_idx(
    images_path: str | Path,
    labels_path: str | Path,
    as_images: bool = False,
    task: TaskChoice = "classification",
) -> RawData:
    """Read an MNIST-style pair of IDX files (``.gz`` files are decompressed on the fly).

    Pixel values are kept as they are (0..255 for MNIST); the preprocessor standardises them.

    >>> raw = read_idx("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")  # doctest: +SKIP
    """
    img_p = _existing_file(images_path, "data.path", "IDX images file")
    lab_p = _existing_file(labels_path, "data.labels_path", "IDX labels file")
    images = _read_idx_array(img_p, "data.path")
    labels = _read_idx_array(lab_p, "data.labels_path")
    problems = []
    if images.ndim not in (2, 3):
        problems.append(problem("data.path", "IDX images of shape N x H x W", images.shape))
    if labels.ndim != 1:
        problems.append(problem("data.labels_path", "IDX labels of shape N", labels.shape))
    if not problems and images.shape[0] != labels.shape[0]:
        problems.append(
            problem(
                "data.labels_path",
                f"as many labels as {img_p.name} has images ({images.shape[0]})",
                labels.shape[0],
            )
        )
    if problems:
        raise DataError(problems)
    x = images.astype(np.float32)
    if images.ndim == 3 and as_images:
        x = x[:, None, :, :]
        names: list[str] = []
    elif images.ndim == 3:
        h, w = images.shape[1:]
        x = x.reshape(len(x), h * w)
        names = [f"pixel_{r}_{c}" for r in range(h) for c in range(w)]
    else:
        names = [f"x{i}" for i in range(x.shape[1])]
    y, resolved, class_names = encode_target(labels, task, "data.labels_path")
    info = {"source": str(img_p), "labels": str(lab_p)}
    return RawData.numeric(x, y, names, class_names, resolved, img_p.name.split(".")[0], info)
