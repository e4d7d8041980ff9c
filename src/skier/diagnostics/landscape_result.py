"""What a loss landscape measured: the grid's loss (and error) per data set, and the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from skier.config.diagnostics import LandscapeConfig
from skier.diagnostics._common import ParamList

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["LandscapeResult", "Surface"]


@dataclass
class Surface:
    """Loss (and error) on the grid for one data set: shape ``(points,)`` for a curve,
    ``(points_y, points)`` for a surface (rows are β, columns α)."""

    name: str
    examples: int
    loss: np.ndarray
    error: np.ndarray | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "examples": self.examples,
            "loss": _json_array(self.loss),
            "error": None if self.error is None else _json_array(self.error),
        }


def _json_array(values: np.ndarray) -> Any:
    return np.where(np.isfinite(values), values, np.nan).astype(object).tolist()


@dataclass
class LandscapeResult:
    """What :func:`landscape` and :func:`interpolate` measured.

    ``surface`` is the landscape on the measured split; ``batches`` the same plane on single
    mini-batches (``per_batch``). ``minimum`` is the lowest loss point of ``surface``.
    """

    dims: int
    direction: str
    alphas: np.ndarray
    betas: np.ndarray | None
    surface: Surface
    batches: list[Surface]
    split: str
    settings: LandscapeConfig
    seconds: float
    evaluations: int
    labels: tuple[str, str] | None = None  # the two ends of an interpolation (α = 0, α = 1)
    batched_points: int = 1
    directions: list[ParamList] = field(default_factory=list, repr=False)

    def plot(self, *, log_scale: bool = False) -> Figure:
        """The landscape's figure (:func:`skier.plots.plot_landscape_figure`: the curve, or the
        contour and surface); a notebook shows it as it is.

        >>> surface.plot(log_scale=True)   # doctest: +SKIP
        """
        from skier.plots.landscape import plot_landscape_figure  # matplotlib only when drawing

        return plot_landscape_figure(self, log_scale=log_scale)

    @property
    def loss(self) -> np.ndarray:
        return self.surface.loss

    @property
    def error(self) -> np.ndarray | None:
        return self.surface.error

    @property
    def minimum(self) -> dict[str, float]:
        """``alpha`` (``beta``) and ``loss`` of the lowest finite point."""
        values = np.where(np.isfinite(self.loss), self.loss, np.inf)
        flat = int(np.argmin(values))
        if self.dims == 1:
            return {"alpha": float(self.alphas[flat]), "loss": float(values[flat])}
        row, col = np.unravel_index(flat, values.shape)
        assert self.betas is not None
        return {
            "alpha": float(self.alphas[col]),
            "beta": float(self.betas[row]),
            "loss": float(values[row, col]),
        }

    @property
    def center_loss(self) -> float | None:
        """The loss at α = 0 (β = 0) when that point is on the grid: the model itself."""
        col = np.flatnonzero(np.isclose(self.alphas, 0.0, atol=1e-12))
        if col.size == 0:
            return None
        if self.dims == 1:
            return float(self.loss[col[0]])
        assert self.betas is not None
        row = np.flatnonzero(np.isclose(self.betas, 0.0, atol=1e-12))
        return None if row.size == 0 else float(self.loss[row[0], col[0]])

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary and values (no tensors)."""
        return {
            "dims": self.dims,
            "direction": self.direction,
            "alphas": self.alphas.tolist(),
            "betas": None if self.betas is None else self.betas.tolist(),
            "surface": self.surface.to_dict(),
            "batches": [b.to_dict() for b in self.batches],
            "split": self.split,
            "labels": list(self.labels) if self.labels else None,
            "minimum": self.minimum,
            "center_loss": self.center_loss,
            "settings": self.settings.model_dump(mode="json"),
            "seconds": self.seconds,
            "evaluations": self.evaluations,
            "batched_points": self.batched_points,
        }

    def to_csv(self) -> str:
        """One row per grid point: ``alpha[,beta],loss[,error]`` (and per-batch losses)."""
        head = ["alpha"] + (["beta"] if self.dims == 2 else []) + ["loss"]
        head += ["error"] if self.error is not None else []
        head += [f"batch{i + 1}_loss" for i in range(len(self.batches))]
        lines = [",".join(head)]
        for index in np.ndindex(self.loss.shape):
            if self.dims == 1:
                row = [self.alphas[index[0]]]
            else:
                assert self.betas is not None
                row = [self.alphas[index[1]], self.betas[index[0]]]
            row.append(self.loss[index])
            if self.error is not None:
                row.append(self.error[index])
            row += [b.loss[index] for b in self.batches]
            lines.append(",".join(repr(float(v)) for v in row))
        return "\n".join(lines) + "\n"


# --- evaluation ----------------------------------------------------------------------------------


# --- the diagnostics -----------------------------------------------------------------------------
