"""Training and evaluation: ``fit`` and ``evaluate``."""

from torchslim.train.evaluate import evaluate
from torchslim.train.fit import FitConfig, History, fit

__all__ = ["FitConfig", "History", "evaluate", "fit"]
