"""Imports every lesson module so that each registers its lessons (see :func:`lesson`).

Lesson modules are the package's public modules other than ``base`` and ``catalog``; adding a
module adds its lessons to the course.
"""

from __future__ import annotations

import importlib
import pkgutil

import skier.lessons as _package

for _info in pkgutil.iter_modules(_package.__path__):
    if not _info.name.startswith("_") and _info.name not in ("base", "catalog"):
        importlib.import_module(f"skier.lessons.{_info.name}")
