"""skier.plots: matplotlib figures of results. Plots compute nothing and never call plt.show().

Every figure, and every axes a plot returns, shows itself as an image in a notebook (see
:mod:`skier.plots.figure`), without pyplot or ``%matplotlib inline``.

>>> from skier.plots import plot_learning_figure, save_figure
>>> save_figure(plot_learning_figure(result), run_dir.learning_curves_png)  # doctest: +SKIP
"""

from skier.plots.connectivity import (
    plot_connect_plane,
    plot_connectivity,
    plot_connectivity_figure,
)
from skier.plots.curves import (
    LearningResult,
    new_figure,
    plot_learning_curves,
    plot_learning_figure,
    save_figure,
)
from skier.plots.figure import SkierFigure
from skier.plots.gradient_flow import (
    GradientFlowSeries,
    gradient_flow_series,
    plot_gradient_flow,
    plot_gradient_flow_figure,
)
from skier.plots.landscape import (
    plot_landscape_1d,
    plot_landscape_batches,
    plot_landscape_contour,
    plot_landscape_figure,
    plot_landscape_surface,
)
from skier.plots.lr_range import plot_lr_range
from skier.plots.schedule import plot_lr_curve
from skier.plots.sharpness import plot_hessian_spectrum, plot_sharpness
from skier.plots.sharpness_steps import (
    SharpnessSeries,
    plot_sharpness_steps,
    plot_sharpness_steps_figure,
    sharpness_series,
)

__all__ = [
    "GradientFlowSeries",
    "LearningResult",
    "SharpnessSeries",
    "SkierFigure",
    "gradient_flow_series",
    "new_figure",
    "plot_connect_plane",
    "plot_connectivity",
    "plot_connectivity_figure",
    "plot_gradient_flow",
    "plot_gradient_flow_figure",
    "plot_hessian_spectrum",
    "plot_landscape_1d",
    "plot_landscape_batches",
    "plot_landscape_contour",
    "plot_landscape_figure",
    "plot_landscape_surface",
    "plot_learning_curves",
    "plot_learning_figure",
    "plot_lr_curve",
    "plot_lr_range",
    "plot_sharpness",
    "plot_sharpness_steps",
    "plot_sharpness_steps_figure",
    "save_figure",
    "sharpness_series",
]
