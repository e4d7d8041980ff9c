"""skier.plots: matplotlib figures of results. Plots compute nothing and never call plt.show().

>>> from skier.plots import plot_learning_figure, save_figure
>>> save_figure(plot_learning_figure(result), run_dir.learning_curves_png)  # doctest: +SKIP
"""

from skier.plots.curves import (
    LearningResult,
    new_figure,
    plot_learning_curves,
    plot_learning_figure,
    save_figure,
)

__all__ = [
    "LearningResult",
    "new_figure",
    "plot_learning_curves",
    "plot_learning_figure",
    "save_figure",
]
