"""Raw data loaders: each returns a :class:`RawData` of numpy arrays, before splitting.

Targets live in :mod:`skier.data.targets`, the built-in sets in :mod:`skier.data.builtin` and
the file formats in :mod:`skier.data.formats`; this module gathers them under one import path.

>>> raw = digits()
>>> raw.x_num.shape, raw.y.shape, raw.task
((1797, 64), (1797,), 'classification')

Nothing here downloads anything: ``digits`` ships with scikit-learn, ``synthetic`` is generated,
and ``read_csv`` / ``read_npz`` / ``read_idx`` read local files.
"""

from skier.data.builtin import digits, synthetic
from skier.data.formats import as_inputs, read_csv, read_idx, read_npz
from skier.data.raw import RawData
from skier.data.targets import MAX_AUTO_CLASSES, TaskChoice, encode_target

__all__ = [
    "MAX_AUTO_CLASSES",
    "RawData",
    "TaskChoice",
    "as_inputs",
    "digits",
    "encode_target",
    "read_csv",
    "read_idx",
    "read_npz",
    "synthetic",
]
