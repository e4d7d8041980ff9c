"""The learning rate over a whole run, drawn from an :class:`~skier.optim.schedules.LRCurve`.

>>> from skier.config import ScheduleConfig
>>> from skier.optim.schedules import lr_curve
>>> curve = lr_curve(ScheduleConfig(name="cosine", warmup_epochs=1), lr=0.1, epochs=5,
...                  steps_per_epoch=4)
>>> ax = plot_lr_curve(curve, log_scale=True)
>>> ax.get_yscale(), ax.get_xlabel()
('log', 'epoch')
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from matplotlib.axes import Axes

from skier.plots.curves import new_figure

if TYPE_CHECKING:  # the plot only reads the curve; importing torch for a type is not needed
    from skier.optim.schedules import LRCurve

__all__ = ["plot_lr_curve"]

_LR_COLOR = "tab:blue"
_WARMUP_COLOR = "tab:green"
_RESTART_COLOR = "tab:gray"


def plot_lr_curve(curve: LRCurve, ax: Axes | None = None, *, log_scale: bool = False) -> Axes:
    """Draw the lr of every optimizer step against epochs (fractional) on ``ax``.

    The lr holds from one step to the next, so the curve is drawn as steps. The end of a
    warm-up is a dashed green line, warm restarts dotted grey lines; the curve's notes (e.g.
    "reduce-on-plateau ... drawn flat") go under the title. ``log_scale``: a log lr axis
    (steps at lr 0 are left out of it).

    >>> ax = plot_lr_curve(curve)   # doctest: +SKIP
    """
    if ax is None:
        ax = new_figure(width=7.0, height=4.0).add_subplot()
    if curve.lrs:
        # One point past the last step, so that the last step's lr is drawn over its width.
        xs = [*curve.epochs, curve.epochs[-1] + 1.0 / max(curve.steps_per_epoch, 1)]
        ax.step(xs, [*curve.lrs, curve.lrs[-1]], where="post", color=_LR_COLOR, label="lr")
    else:
        ax.text(0.5, 0.5, "no steps", ha="center", va="center", transform=ax.transAxes)
    if curve.warmup_end is not None:
        ax.axvline(
            curve.warmup_end, color=_WARMUP_COLOR, linestyle="--", linewidth=1,
            label=f"warm-up end (epoch {curve.warmup_end:g})",
        )  # fmt: skip
    for i, at in enumerate(curve.restarts):
        ax.axvline(
            at, color=_RESTART_COLOR, linestyle=":", linewidth=1,
            label="restart" if i == 0 else None,
        )  # fmt: skip
    if log_scale:
        ax.set_yscale("log", nonpositive="mask")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    title = f"{curve.name} schedule (lr updated per {curve.interval})"
    if curve.notes:
        title += "\n" + "\n".join(curve.notes)
    ax.set_title(title, fontsize="medium" if not curve.notes else "small")
    ax.grid(True, alpha=0.3)
    if len(ax.get_legend_handles_labels()[0]) > 1:
        ax.legend(fontsize="small")
    return ax
