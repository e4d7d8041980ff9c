"""Callbacks: narrow hooks around the loop."""

from skier.train.callbacks.base import Callback
from skier.train.callbacks.checkpoint import Checkpoint
from skier.train.callbacks.early_stopping import EarlyStopping
from skier.train.callbacks.gradient_flow import GradientFlow
from skier.train.callbacks.live import LiveDisplay
from skier.train.callbacks.monitor import Monitor
from skier.train.callbacks.progress import ProgressBar
from skier.train.callbacks.sharpness import SharpnessTracker

__all__ = [
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "GradientFlow",
    "LiveDisplay",
    "Monitor",
    "ProgressBar",
    "SharpnessTracker",
]
