"""Data: built-in and local data sets, splits, preprocessing and batching.

>>> from skier.config import DataConfig
>>> bundle = load_data(DataConfig(name="synthetic", samples=200, features=4, classes=3))
>>> bundle.input_shape, bundle.num_classes
((4,), 3)
"""

from skier.data.builtin import digits, synthetic
from skier.data.formats import read_csv, read_idx, read_npz
from skier.data.load import (
    as_split,
    bundle_from_indices,
    bundle_from_raw,
    data_problems,
    from_arrays,
    load_data,
    load_raw,
    split_rows,
)
from skier.data.preprocess import Preprocessor, check_no_missing, drop_missing, missing_counts
from skier.data.raw import RawData
from skier.data.splits import kfold_indices, stratified_split
from skier.data.targets import encode_target
from skier.data.types import DataBundle, Split, Task

__all__ = [
    "DataBundle",
    "Preprocessor",
    "RawData",
    "Split",
    "Task",
    "as_split",
    "bundle_from_indices",
    "bundle_from_raw",
    "check_no_missing",
    "data_problems",
    "digits",
    "drop_missing",
    "encode_target",
    "from_arrays",
    "kfold_indices",
    "load_data",
    "load_raw",
    "missing_counts",
    "read_csv",
    "read_idx",
    "read_npz",
    "split_rows",
    "stratified_split",
    "synthetic",
]
