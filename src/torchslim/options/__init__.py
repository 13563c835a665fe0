"""Options: the typed classes that are the only definition of every method's options.

The library functions take them (keyword arguments build them), a recipe step *is* one, the CLI
flags are generated from them (:mod:`torchslim.options.cli`) and so are the reference tables
(:mod:`torchslim.options.docs`). Nothing here imports torch.

Where a method's options class lives: here when it needs nothing above this package (training,
INT8 quantization, export, measurement); beside its method when it validates against the method's
own registry (:mod:`torchslim.prune.config`: pruning criteria; :mod:`torchslim.distill.config`:
distillation losses; :mod:`torchslim.text.config`: the text task's, whose losses are those), so
that no lower layer imports a higher one.
"""

from torchslim.options.base import Options, OptionsError, explain
from torchslim.options.fit import FitConfig, TrainConfig
from torchslim.options.measure import MeasureConfig
from torchslim.options.quantize import (
    DynamicInt8Config,
    ExportConfig,
    QATConfig,
    QuantizeConfig,
    StaticInt8Config,
)

__all__ = ["DynamicInt8Config", "ExportConfig", "FitConfig", "MeasureConfig", "Options", "OptionsError", "QATConfig",
           "QuantizeConfig", "StaticInt8Config", "TrainConfig", "explain"]
