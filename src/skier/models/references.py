"""``package.module:attr`` references in configs (a model factory, an init function, ...).

The resolver lives in :mod:`skier._references`, outside the layers, so that the data layer
(``data.dataset``) resolves its references with the same one.
"""

from __future__ import annotations

from skier._references import resolve_reference

__all__ = ["resolve_reference"]
