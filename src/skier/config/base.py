"""What every config section shares: strict keys, and errors that list every problem at once::

class Demo(Section):
    lr: float = 0.1

validate_model(Demo, {"lr": "fast"}, "demo.yaml")
# ConfigError: demo.yaml: lr must be a valid number, unable to parse string as a number;
# got 'fast'.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from skier.errors import ConfigError, did_you_mean

__all__ = ["Fraction", "PositiveInt", "Section", "as_section", "validate_model"]

Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]

M = TypeVar("M", bound=BaseModel)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _fields_at(root: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """Valid keys of the section that ``loc`` points into (for "did you mean")."""
    model: type[BaseModel] = root
    for part in loc[:-1]:
        info = model.model_fields.get(str(part))
        ann = info.annotation if info is not None else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def _describe(root: type[BaseModel], err: Mapping[str, Any], source: str, prefix: str) -> str:
    # Drop pydantic's union-branch labels ("constrained-int", "literal['full']") from the path.
    loc = [str(p) for p in err["loc"] if not any(c in str(p) for c in "-[(")]
    field = prefix + ".".join(loc) if loc else (prefix.rstrip(".") or "config")
    where = f"{source}: " if source else ""
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        valid = _fields_at(root, err["loc"])
        hint = did_you_mean(loc[-1], valid) or (
            f" Valid keys: {', '.join(valid)}." if valid else ""
        )
        return f"{where}{field} is not a known setting.{hint}"
    if kind == "missing":
        return f"{where}{field} is required."
    msg = str(err["msg"]).removeprefix("Value error, ")
    first, _, rest = msg.partition(" ")
    if kind == "value_error" and first in _fields_at(root, [*err["loc"], first]):
        # A check across fields names the field it is about: "end_lr must be greater ...".
        return f"{where}{prefix}{'.'.join([*loc, first])} {rest}"
    if kind.startswith(("greater", "less")):
        msg = msg.replace("Input should be", "must be")
    elif msg.startswith("Input should be"):
        msg = "must be" + msg.removeprefix("Input should be")
    elif not msg.startswith("must"):
        msg = f"must be valid: {msg}"
    msg, sep, hint = msg.partition(" Did you mean")  # the hint goes after the value
    return f"{where}{field} {msg.rstrip('.')}; got {value!r}.{sep}{hint}"


def _merge_problems(problems: Iterable[str]) -> list[str]:
    out: list[str] = []
    for p in problems:
        if p not in out:
            out.append(p)
    return out


def validate_model(
    model: type[M], data: Mapping[str, Any] | None, source: str = "", *, prefix: str = ""
) -> M:
    """``model`` validated from a plain mapping; :class:`ConfigError` lists every problem.

    ``source`` names the file (or flag) the values came from; ``prefix`` is put before each
    field name (``"landscape."``) so the message names the key the user wrote.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        what = source or prefix.rstrip(".") or "config"
        raise ConfigError(f"{what} must be a mapping of settings; got {data!r}.")
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        # A union (batch_size: int | "full") reports one error per branch: keep the first.
        seen: dict[str, str] = {}
        for err in exc.errors(include_url=False):
            key = ".".join(str(p) for p in err["loc"] if not any(c in str(p) for c in "-[("))
            seen.setdefault(key, _describe(model, err, source, prefix))
        raise ConfigError(_merge_problems(seen.values())) from None


def as_section(model: type[M], value: M | Mapping[str, Any] | None, prefix: str) -> M:
    """``value`` as a ``model`` section: ``None`` gives the defaults, an instance is kept, a
    mapping is validated (errors name ``prefix`` + the key). What every ``settings=`` takes."""
    if value is None:
        return model()
    if isinstance(value, model):
        return value
    if isinstance(value, Mapping):
        return validate_model(model, value, prefix=prefix)
    raise ConfigError(
        f"{prefix.rstrip('.')} must be a {model.__name__} or a mapping; "
        f"got {type(value).__name__!r}."
    )
