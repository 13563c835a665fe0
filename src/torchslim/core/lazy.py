"""Packages whose public names are imported on first use (PEP 562).

``torchslim --help`` builds every flag from the options classes, some of which live in method
packages (``torchslim.prune.config``); importing such a class runs its package's ``__init__``, which
must not import torch. A package lists where each public name comes from, and
:func:`lazy_exports` gives it the module-level ``__getattr__`` and ``__dir__`` that import them when
touched. (The same names are imported under ``if TYPE_CHECKING:`` for type checkers and the API
reference.)
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any


class _LazyPackage(types.ModuleType):
    """A package whose public name may be a function of the same-named submodule
    (``torchslim.pipeline.compare``): importing that submodule, which Python binds on the package,
    must not replace the function."""

    def __setattr__(self, name: str, value: Any) -> None:
        exports = self.__dict__.get("_EXPORTS", {})
        if isinstance(value, types.ModuleType) and exports.get(name) == name and hasattr(value, name):
            return
        super().__setattr__(name, value)


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose public name ``n`` is defined in its submodule
    ``exports[n]`` (a name equal to its submodule's is that submodule's own attribute of that name when
    it has one, else the submodule itself)."""

    def __getattr__(name: str) -> Any:
        source = exports.get(name)
        if source is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(f"{package}.{source}")
        return module if source == name and not hasattr(module, name) else getattr(module, name)

    def __dir__() -> list[str]:
        return sorted(set(exports) | set(vars(sys.modules[package])))

    sys.modules[package].__class__ = _LazyPackage
    return __getattr__, __dir__


__all__ = ["lazy_exports"]
