"""Every method's options, one typed class each: the only place an option is defined.

The library functions take these (keyword arguments build them), a recipe step *is* one, the CLI
flags are generated from them (:mod:`torchslim.options.cli`) and so are the reference tables
(:mod:`torchslim.options.docs`). Nothing here imports torch.
"""

from torchslim.options.base import Options, OptionsError, explain
from torchslim.options.fit import FitConfig, TrainConfig

__all__ = ["FitConfig", "Options", "OptionsError", "TrainConfig", "explain"]
