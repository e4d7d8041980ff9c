"""What a run ran on: Python, platform, host and package versions — without importing torch.

Package versions come from installed metadata (``importlib.metadata``), so capturing them costs
milliseconds and keeps the record layer free of torch. Whether CUDA is available can only be
known by importing torch, so the train layer adds that itself.

>>> env = capture_environment()
>>> sorted(env["packages"])[:2]
['SQLAlchemy', 'matplotlib']
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from importlib import metadata
from typing import Any

from skier import __version__

__all__ = ["capture_environment"]

# Distribution names (as pip knows them), not import names.
_PACKAGES = ("torch", "numpy", "scikit-learn", "pandas", "SQLAlchemy", "matplotlib", "pydantic")


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def capture_environment() -> dict[str, Any]:
    """A JSON-ready description of the interpreter, machine and installed packages.

    Missing packages map to ``None``.
    """
    return {
        "cpu_count": os.cpu_count(),
        "hostname": socket.gethostname(),
        "packages": {name: _version(name) for name in _PACKAGES},
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "skier": __version__,
    }
