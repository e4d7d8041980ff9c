"""``package.module:attr`` references in configs: a model factory, an init function, a
Dataset factory (``data.dataset``). Outside the layers: the models and the data layer use it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from skier.errors import SkierError, did_you_mean, problem

__all__ = ["resolve_reference"]

_MISSING = object()


def resolve_reference(
    ref: str, field: str, error: type[SkierError], *, what: str = "a function or class"
) -> Callable[..., Any]:
    """Import ``package.module:attr[.attr]`` and return the callable it names.

    Every failure is one ``error`` naming ``field``: a malformed reference, a module that is
    missing (told apart from a module that imports something missing), an error raised while
    the module is imported, a missing attribute (with "did you mean"), something not callable.

    >>> resolve_reference("math:sqrt", "model.name", SkierError)(4.0)
    2.0
    """
    module_name, _, attr_path = ref.partition(":")
    if not module_name or not attr_path:
        raise error(
            problem(field, "a 'package.module:function' reference", ref,
                    "For example 'mypackage.models:make_net'.")
        )  # fmt: skip
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise error(
                problem(
                    field,
                    "a 'package.module:function' reference to an importable module",
                    ref,
                    f"No module named {exc.name!r}; install it or put it on sys.path.",
                )
            ) from exc
        raise error(f"{field} {ref!r}: importing {module_name!r} failed: {exc}.") from exc
    except Exception as exc:  # an error inside the user's module while it is imported
        raise error(
            f"{field} {ref!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}."
        ) from exc
    obj: Any = module
    where = module_name
    for part in attr_path.split("."):
        nxt = getattr(obj, part, _MISSING)
        if nxt is _MISSING:
            public = [n for n in dir(obj) if not n.startswith("_")]
            raise error(
                problem(
                    field,
                    "a reference to an existing function",
                    ref,
                    f"{where!r} has no attribute {part!r}.{did_you_mean(part, public)}",
                )
            )
        obj, where = nxt, f"{where}.{part}"
    if not callable(obj):
        raise error(
            problem(field, f"a reference to {what}", ref, f"{where!r} is a {type(obj).__name__}.")
        )
    return obj
