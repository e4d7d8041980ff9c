"""Diagnostics: the LR range test, loss landscapes, sharpness, mode connectivity and gradient
flow.

Each is ``f(model, data, ...) -> Result``: it validates first, leaves the caller's model and
optimizer exactly as they were, and is drawn by a separate ``skier.plots`` function.

>>> from skier.diagnostics import landscape, lr_range_test  # doctest: +SKIP
>>> lr_range_test(model, data).lr                           # doctest: +SKIP
0.0049
"""

from skier.diagnostics._common import preserved
from skier.diagnostics.connectivity import ConnectResult, Curve, connect
from skier.diagnostics.landscape import (
    LandscapeResult,
    direction_between,
    interpolate,
    landscape,
    random_direction,
)
from skier.diagnostics.lr_range import LRRangeResult, lr_range_test
from skier.diagnostics.sharpness import SharpnessResult, hessian_vector_product, sharpness

__all__ = [
    "ConnectResult",
    "Curve",
    "LRRangeResult",
    "LandscapeResult",
    "SharpnessResult",
    "connect",
    "direction_between",
    "hessian_vector_product",
    "interpolate",
    "landscape",
    "lr_range_test",
    "preserved",
    "random_direction",
    "sharpness",
]
