"""torchslim: make trained PyTorch models smaller and faster, and prove it with measurements.

The public API lives here; everything else may change between versions. Names are imported on
first use (PEP 562), so ``import torchslim`` and ``torchslim --help`` do not load torch until a
name that needs it is touched.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from torchslim._version import __version__

# public name -> the module that defines it (a module's own name: the module itself)
_PUBLIC = {
    "data": "torchslim.data",
    "export": "torchslim.export",
    "models": "torchslim.models",
    "prune": "torchslim.prune",
    "quantize": "torchslim.quantize",
    "runtime": "torchslim.runtime",
    "zoo": "torchslim.zoo",
    "options": "torchslim.options",
    "load_model": "torchslim.models.checkpoint",
    "save_model": "torchslim.models.checkpoint",
    "CheckpointError": "torchslim.core.errors",
    "CorruptFileError": "torchslim.core.errors",
    "DataNotFoundError": "torchslim.core.errors",
    "NonFiniteLossError": "torchslim.core.errors",
    "TorchSlimError": "torchslim.core.errors",
    "UnknownNameError": "torchslim.core.errors",
    "Registry": "torchslim.core.registry",
    "MeasureRecord": "torchslim.measure",
    "measure": "torchslim.measure",
    "measure_many": "torchslim.measure",
    "search": "torchslim.search.run",
    "SearchConfig": "torchslim.options.search",
    "FitConfig": "torchslim.options.fit",
    "History": "torchslim.train",
    "evaluate": "torchslim.train",
    "fit": "torchslim.train",
}


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'torchslim' has no attribute {name!r}")
    loaded = importlib.import_module(module)
    is_module = module.rsplit(".", 1)[-1] == name and name not in _FUNCTIONS
    value = loaded if is_module else getattr(loaded, name)
    globals()[name] = value  # later lookups skip this function
    return value


# names that are functions although a submodule of the same name exists
_FUNCTIONS = ("measure", "search")


class _Package(types.ModuleType):
    """``torchslim.measure`` and ``torchslim.search`` are the functions: importing the submodule of the
    same name (which Python binds on the package) must not replace them."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _FUNCTIONS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])


__all__ = sorted(_PUBLIC) + ["__version__"]
