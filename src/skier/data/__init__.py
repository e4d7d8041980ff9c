"""Data: built-in and local data sets, splits, preprocessing and batching.

>>> from skier.config import DataConfig
>>> bundle = load_data(DataConfig(name="synthetic", samples=200, features=4, classes=3))
>>> bundle.input_shape, bundle.num_classes
((4,), 3)
"""

from skier.data.datasets import (
    RawData,
    digits,
    encode_target,
    read_csv,
    read_idx,
    read_npz,
    synthetic,
)
from skier.data.load import bundle_from_raw, data_problems, from_arrays, load_data, load_raw
from skier.data.preprocess import Preprocessor, check_no_missing, drop_missing, missing_counts
from skier.data.splits import kfold_indices, stratified_split
from skier.data.types import DataBundle, Split, Task

__all__ = [
    "DataBundle",
    "Preprocessor",
    "RawData",
    "Split",
    "Task",
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
    "stratified_split",
    "synthetic",
]
