"""Public names of a package imported when first used (PEP 562), so that importing the package
stays fast: ``skier`` (torch loaded only when a name needs it) and ``skier.record``
(SQLAlchemy only when the store is used).

>>> getattr_, dir_ = lazy_names("skier.demo", {"sqrt": "math"}, {}, ["sqrt"])
>>> getattr_("sqrt")(9.0), dir_()
(3.0, ['sqrt'])
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str, where: Mapping[str, str], namespace: dict[str, Any], public: list[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module's ``__getattr__`` and ``__dir__``: ``name`` is imported from the module
    ``where[name]`` names, then kept in ``namespace`` (the package's globals) so later lookups
    are plain attribute reads."""

    def getattr_(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return public

    return getattr_, dir_
