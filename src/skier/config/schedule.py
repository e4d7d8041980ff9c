"""The ``schedule`` section of a run's config: the learning-rate schedule and its warm-up.

>>> ScheduleConfig.model_validate({"name": "cosine", "warmup_epochs": 2}).name
'cosine'
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from skier.config.base import Fraction, PositiveInt, Section
from skier.errors import did_you_mean

Positive = Annotated[float, Field(gt=0.0)]

__all__ = ["ScheduleConfig"]


class ScheduleConfig(Section):
    """Learning-rate schedule (a ``torch.optim.lr_scheduler`` underneath), with optional warm-up.

    Each schedule reads only its own fields; defaults are torch's. ``interval: auto`` updates
    the lr after every optimizer step for ``cyclical``, ``one_cycle`` and ``cosine_restarts``
    and after every epoch for the rest. Lengths in epochs (``warmup_epochs``, ``step_size``,
    ``milestones``, ``restart_epochs``) stay in epochs with ``interval: step`` (only the
    granularity changes); ``step_size_up``/``step_size_down`` count optimizer steps, like
    torch. A warm-up ramps linearly up to the optimizer's lr; the schedule's clock (step_size,
    milestones, the cosine period) starts when it ends.
    """

    name: Literal[
        "constant", "step", "multistep", "exponential", "cosine", "cosine_restarts",
        "cyclical", "one_cycle", "plateau",
    ] = "constant"  # fmt: skip
    interval: Literal["auto", "epoch", "step"] = Field(
        "auto",
        description="when the lr changes: after every epoch or every optimizer step",
        validate_default=True,
    )
    warmup_epochs: Annotated[int, Field(ge=0)] = Field(
        0, description="linear warm-up before the schedule (not one_cycle)", validate_default=True
    )
    # step, multistep, exponential
    step_size: PositiveInt = Field(10, description="step: epochs between decays")
    milestones: list[PositiveInt] = Field(
        default_factory=list,
        description="multistep: epochs at which the lr decays",
        validate_default=True,
    )
    gamma: Annotated[float, Field(gt=0.0, le=1.0)] | None = Field(
        None, description="decay factor; default 0.1, or 1.0 for cyclical exp_range"
    )
    # cosine, cosine_restarts, plateau
    min_lr: Annotated[float, Field(ge=0.0)] = Field(0.0, description="lower bound of the lr")
    restart_epochs: PositiveInt = Field(10, description="cosine_restarts: first period (T_0)")
    restart_mult: PositiveInt = Field(1, description="cosine_restarts: period factor (T_mult)")
    # cyclical, one_cycle
    max_lr: Annotated[float, Field(gt=0.0)] | None = Field(
        None,
        description="cyclical (required), one_cycle (default: optim.lr): the peak lr",
        validate_default=True,
    )
    base_lr: Annotated[float, Field(gt=0.0)] | None = Field(
        None, description="cyclical: the lowest lr (default: optim.lr)"
    )
    step_size_up: PositiveInt = Field(2000, description="cyclical: optimizer steps going up")
    step_size_down: PositiveInt | None = Field(None, description="cyclical: default step_size_up")
    cycle_mode: Literal["triangular", "triangular2", "exp_range"] = "triangular"
    cycle_momentum: bool | None = Field(
        None, description="cyclical, one_cycle: cycle momentum (default: if optimizer momentum>0)"
    )
    pct_start: Fraction = Field(0.3, description="one_cycle: share of the run going up")
    anneal_strategy: Literal["cos", "linear"] = "cos"
    div_factor: Annotated[float, Field(gt=0.0)] = Field(25.0, description="start: max_lr / this")
    final_div_factor: Annotated[float, Field(gt=0.0)] = Field(
        1e4, description="one_cycle: the end lr is the start lr / this"
    )
    three_phase: bool = False
    # plateau
    monitor: str = Field("val_loss", description="plateau: the logged metric it watches")
    mode: Literal["auto", "min", "max"] = "auto"  # plateau; auto: max for accuracy, f1, r2...
    factor: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        0.1, description="plateau: the lr is multiplied by this"
    )
    patience: Annotated[int, Field(ge=0)] = 10
    threshold: Annotated[float, Field(ge=0.0)] = 1e-4
    threshold_mode: Literal["rel", "abs"] = "rel"
    cooldown: Annotated[int, Field(ge=0)] = 0

    @field_validator(
        "name", "interval", "cycle_mode", "anneal_strategy", "mode", "threshold_mode",
        mode="before",
    )  # fmt: skip
    @classmethod
    def _known_choice(cls, v: object, info: Any) -> object:
        # The Literal would list the choices too; this adds "did you mean" for a misspelt one.
        field = cls.model_fields[str(info.field_name)]
        choices = [str(c) for c in getattr(field.annotation, "__args__", ())]
        if isinstance(v, str) and choices and v not in choices:
            hint = did_you_mean(v, choices).strip()
            raise ValueError(
                f"must be one of {', '.join(map(repr, choices))}" + f" ({hint})" * bool(hint)
            )
        return v

    @field_validator("interval")
    @classmethod
    def _interval_fits(cls, v: str, info: Any) -> str:
        name = info.data.get("name")
        if v == "epoch" and name == "cyclical":
            raise ValueError(
                "must be 'auto' or 'step' for schedule.name 'cyclical' (it cycles in steps)"
            )
        if v == "step" and name == "plateau":
            raise ValueError(
                "must be 'auto' or 'epoch' for schedule.name 'plateau' (metrics come per epoch)"
            )
        return v

    @field_validator("warmup_epochs")
    @classmethod
    def _no_double_warmup(cls, v: int, info: Any) -> int:
        if v and info.data.get("name") == "one_cycle":
            raise ValueError(
                "must be 0 for schedule.name 'one_cycle': it warms up on its own (pct_start)"
            )
        return v

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, v: list[int], info: Any) -> list[int]:
        if any(v[i + 1] <= v[i] for i in range(len(v) - 1)):
            raise ValueError("must be strictly increasing epochs, e.g. [30, 60, 90]")
        if not v and info.data.get("name") == "multistep":
            raise ValueError(
                "must be a non-empty list for schedule.name 'multistep', e.g. [30, 60]"
            )
        return v

    @field_validator("max_lr")
    @classmethod
    def _max_lr_given(cls, v: float | None, info: Any) -> float | None:
        if v is None and info.data.get("name") == "cyclical":
            raise ValueError("must be set for schedule.name 'cyclical' (the peak lr), e.g. 0.1")
        return v

    @field_validator("base_lr")
    @classmethod
    def _below_max_lr(cls, v: float | None, info: Any) -> float | None:
        peak = info.data.get("max_lr")
        if v is not None and peak is not None and v >= peak:
            raise ValueError(f"must be below schedule.max_lr ({peak!r})")
        return v
