"""torchslim: make trained PyTorch models smaller and faster, and prove it with measurements.

The public API lives here; everything else may change between versions.
"""

from torchslim import data, export, models, prune, quantize, runtime, zoo
from torchslim.core.checkpoint import load_model, save_model
from torchslim.core.errors import (
    CheckpointError,
    CorruptFileError,
    DataNotFoundError,
    NonFiniteLossError,
    TorchSlimError,
    UnknownNameError,
)
from torchslim.core.registry import Registry
from torchslim.measure import MeasureRecord, measure, measure_many
from torchslim.train import FitConfig, History, evaluate, fit

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "CorruptFileError",
    "DataNotFoundError",
    "FitConfig",
    "History",
    "MeasureRecord",

    "NonFiniteLossError",
    "Registry",
    "TorchSlimError",
    "UnknownNameError",
    "data",
    "evaluate",
    "export",
    "fit",
    "load_model",
    "measure",
    "measure_many",

    "models",
    "prune",
    "quantize",
    "runtime",
    "save_model",
    "zoo",
]
