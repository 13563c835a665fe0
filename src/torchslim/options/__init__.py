"""Every method's options, one typed class each: the only place an option is defined.

The library functions take these (keyword arguments build them), a recipe step *is* one, the CLI
flags are generated from them (:mod:`torchslim.options.cli`) and so are the reference tables
(:mod:`torchslim.options.docs`). Nothing here imports torch.
"""

from torchslim.options.base import Options, OptionsError, explain
from torchslim.options.distill import DistillConfig, LossItem, TemperatureSchedule
from torchslim.options.fit import FitConfig, TrainConfig
from torchslim.options.prune import PruneConfig, SparsifyConfig
from torchslim.options.quantize import (
    DynamicInt8Config,
    ExportConfig,
    QATConfig,
    QuantizeConfig,
    StaticInt8Config,
)
from torchslim.options.text import (
    TextDistillConfig,
    TextExportConfig,
    TextLayersConfig,
    TextPruneConfig,
    TextQuantizeConfig,
)

__all__ = ["DistillConfig", "DynamicInt8Config", "LossItem", "TemperatureSchedule", "ExportConfig", "FitConfig", "Options", "OptionsError", "PruneConfig",
           "QATConfig", "QuantizeConfig", "SparsifyConfig", "StaticInt8Config", "TextDistillConfig", "TextExportConfig",
           "TextLayersConfig", "TextPruneConfig", "TextQuantizeConfig", "TrainConfig", "explain"]
