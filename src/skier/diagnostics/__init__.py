"""Diagnostics: the LR range test, loss landscapes, sharpness and gradient flow.

Each is ``f(model, data, ...) -> Result``: it validates first, leaves the caller's model and
optimizer exactly as they were, and is drawn by a separate ``skier.plots`` function.
"""

from skier.diagnostics._common import preserved

__all__ = ["preserved"]
