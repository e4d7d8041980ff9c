"""Settings of the diagnostics: LR range test, loss landscapes and sharpness.

One schema for the Python keywords, the YAML sections and the CLI options::

    >>> LRFindConfig(end_lr=1.0).suggestion
    'valley'
    >>> LandscapeConfig(dims=1).points
    51
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from skier.config.base import PositiveInt, Section

__all__ = ["ConnectConfig", "LRFindConfig", "LandscapeConfig", "SharpnessConfig"]

Finite = Annotated[float, Field(allow_inf_nan=False)]


class LRFindConfig(Section):
    """The LR range test (Smith 2017): train briefly while the lr grows, watch the loss.

    ``optim.lr: auto`` in a run config runs it first with these settings (the ``lr_find``
    section) and trains with ``suggestion``.
    """

    start_lr: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = Field(
        1e-7, description="lr of the first step"
    )
    end_lr: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = Field(
        10.0, description="lr of the last step"
    )
    num_steps: Annotated[int, Field(ge=5)] = Field(100, description="mini-batches in the ramp")
    mode: Literal["exponential", "linear"] = Field("exponential", description="shape of the ramp")
    beta: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.98, description="smoothing of the loss (bias-corrected moving average)"
    )
    divergence_factor: Annotated[float, Field(gt=1.0)] = Field(
        4.0, description="stop when the smoothed loss exceeds this times the best"
    )
    suggestion: Literal["valley", "steepest", "minimum"] = Field(
        "valley",
        description="the lr chosen for optim.lr: auto ('minimum' is the minimum's lr / 10)",
    )

    @model_validator(mode="after")
    def _ramp_goes_up(self) -> LRFindConfig:
        if self.end_lr <= self.start_lr:
            raise ValueError(
                f"end_lr must be greater than start_lr ({self.start_lr!r}); got {self.end_lr!r}."
            )
        return self


class LandscapeConfig(Section):
    """Loss landscapes (Li et al. 2018): loss and error around the trained weights.

    ``direction`` picks the axes: ``random`` (Gaussian, normalized as ``normalization`` says),
    ``hessian`` (top eigenvectors of the Hessian), ``init`` (the straight line from the initial
    weights, α=0, to the final ones, α=1) or ``run`` (from this run, α=0, to another, α=1).
    ``init`` and ``run`` are 1-D and default to α ∈ [-0.25, 1.25].
    """

    dims: Literal[1, 2] = Field(2, description="1: a curve; 2: a surface")
    direction: Literal["random", "hessian", "init", "run"] = "random"
    normalization: Literal["filter", "layer", "none"] = Field(
        "filter",
        description="random directions: rescale each filter (row of dim 0) or whole layer "
        "to the norm of the matching weights; 'none' keeps the raw Gaussian",
    )
    ignore: Literal["biasbn", "none"] = Field(
        "biasbn",
        description="'biasbn': zero the direction on biases and batch-norm parameters "
        "(1-D tensors); 'none': treat them like the weights",
    )
    xrange: tuple[Finite, Finite] = Field((-1.0, 1.0), description="range of α")
    yrange: tuple[Finite, Finite] = Field((-1.0, 1.0), description="range of β (2-D)")
    points: Annotated[int, Field(ge=2, le=1001)] = Field(51, description="points along α")
    points_y: Annotated[int, Field(ge=2, le=1001)] | None = Field(
        None, description="points along β (default: points)"
    )
    split: Literal["train", "val", "test"] = Field("train", description="data it is measured on")
    subset: PositiveInt | None = Field(
        None,
        description="a fixed seeded subset of this many examples (faster, noisier); "
        "default: the whole split",
    )
    per_batch: bool = Field(
        False, description="also the same plane on two different mini-batches, side by side"
    )
    batch_size: PositiveInt | None = Field(
        None, description="per_batch: examples per mini-batch (default: train.batch_size)"
    )
    recompute_bn: bool = Field(
        True,
        description="re-estimate batch-norm statistics at each point of an interpolation "
        "between runs (rather than interpolating them)",
    )
    seed: int = Field(0, description="seed of the random directions and the subset")
    eval_batch_size: PositiveInt = Field(
        4096, description="examples per forward pass while evaluating a point"
    )

    @model_validator(mode="before")
    @classmethod
    def _interpolation_range(cls, data: Any) -> Any:
        # A line between two weight settings is drawn a little past both ends by default.
        if isinstance(data, dict) and data.get("direction") in ("init", "run"):
            data = {"xrange": (-0.25, 1.25), "dims": 1, **data}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> LandscapeConfig:
        for name in ("xrange", "yrange"):
            low, high = getattr(self, name)
            if not low < high:
                raise ValueError(f"{name} must be [low, high] with low < high; got {[low, high]}.")
        if self.direction in ("init", "run") and self.dims != 1:
            raise ValueError(
                f"dims must be 1 with direction {self.direction!r} (a line between two weight "
                f"settings); got {self.dims}."
            )
        return self


class SharpnessConfig(Section):
    """Sharpness: top Hessian eigenvalues (Lanczos or power iteration) and trace (Hutchinson)."""

    top_k: Annotated[int, Field(ge=1, le=50)] = Field(1, description="eigenvalues to find")
    method: Literal["lanczos", "power"] = Field(
        "lanczos",
        description="lanczos: all top-k at once, stops on the residual; power: power iteration "
        "with deflation, one eigenvalue after the other",
    )
    max_iterations: PositiveInt = Field(
        100, description="Hessian-vector products per eigenvalue (lanczos: top_k times this in all)"
    )
    tolerance: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        1e-4,
        description="lanczos: stop when each residual ||Hx - λx|| is below this times |λ|; "
        "power: when the eigenvalue changes by less than this (relative)",
    )
    trace: bool = Field(True, description="also estimate the Hessian trace (Hutchinson)")
    trace_samples: PositiveInt = Field(100, description="Rademacher probes for the trace")
    trace_basis: Annotated[int, Field(ge=0, le=500)] = Field(
        20,
        description="Krylov vectors deflated out of the trace's probes: their part of the trace "
        "is exact, the probes estimate the rest (lanczos reuses its own basis and adds "
        "products only up to this size); 0: plain Hutchinson",
    )
    trace_method: Literal["auto", "exact", "hutchinson"] = Field(
        "auto",
        description="exact: the Gauss-Newton trace, equal to the Hessian's for nets "
        "piecewise-linear in each weight (Linear, ReLU/LeakyReLU, additions; a built-in loss), "
        "an error elsewhere; hutchinson: the deflated estimate; auto: exact where it applies, "
        "else for nets of Linear layers and elementwise activations the Gauss-Newton control "
        "variate (tr G exact, probes of H - G), else for nets ending in a Linear that "
        "layer's block exact and the deflated estimate on the rest, else the deflated estimate",
    )
    split: Literal["train", "val", "test"] = "train"
    subset: PositiveInt | None = Field(
        None, description="a fixed seeded subset of this many examples; default: the whole split"
    )
    batch_size: PositiveInt = Field(
        2048, description="examples per Hessian-vector product batch (averaged, not summed)"
    )
    seed: int = 0


class ConnectConfig(Section):
    """Mode connectivity (Garipov et al. 2018): train a curve between two minima.

    The curve's optimizer comes from the run config's ``optim`` section (its ``weight_decay``
    is applied to the point on the curve, not to the bends) and its mini-batches from ``train``.
    """

    curve: Literal["bezier", "polychain"] = Field(
        "bezier", description="quadratic (or higher) Bezier curve, or a polygonal chain"
    )
    bends: Annotated[int, Field(ge=1, le=8)] = Field(
        1, description="control points between the endpoints (initialised on the straight line)"
    )
    epochs: PositiveInt = Field(30, description="epochs of curve training")
    schedule: Literal["reference", "config"] = Field(
        "reference",
        description="'reference': constant lr for the first half, then linear decay to 1% at "
        "90% of training (as Garipov et al.); 'config': the run config's schedule section",
    )
    points: Annotated[int, Field(ge=3, le=1001)] = Field(
        61, description="values of t where the curve and the straight line are evaluated"
    )
    ensemble_points: Annotated[int, Field(ge=2, le=101)] = Field(
        11, description="models sampled along the curve (t evenly spaced) for the ensemble"
    )
    plane_points: Annotated[int, Field(ge=0, le=201)] = Field(
        21, description="grid size of the plane through the endpoints and the bend (0: no plane)"
    )
    plane_margin: Annotated[float, Field(ge=0.0, le=2.0)] = Field(
        0.2, description="the plane's extent beyond the three points, as a fraction"
    )
    seed: int = Field(0, description="seed of the t draws and the mini-batch order")
    eval_batch_size: PositiveInt = 4096
