"""Data: built-in and local data sets, splits, preprocessing and batching."""

from skier.data.types import DataBundle, Split, Task

__all__ = ["DataBundle", "Split", "Task"]
