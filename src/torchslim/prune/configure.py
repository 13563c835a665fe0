"""Options from keyword arguments: the pruning functions take a config, and keywords as sugar."""

from __future__ import annotations

from typing import Any, TypeVar

from torch import nn

from torchslim.options.base import Options, OptionsError

T = TypeVar("T", bound=Options)


def configure(options: type[T], where: str, config: T | None, given: dict[str, Any]) -> T:
    """``config`` with the keyword arguments ``given`` laid over it (or the defaults when there is no
    config), validated as one: a bad or unknown option raises ``OptionsError`` naming ``where``."""
    if config is not None and not isinstance(config, options):
        raise OptionsError(f"{where}: config must be a {options.__name__}, got {type(config).__name__}.")
    if not given and config is not None:
        return config
    base = config.model_dump() if config is not None else {}
    return options.build(where, {**base, **given})


def split_module_types(options: dict[str, Any]) -> list[type[nn.Module]]:
    """Take the ``nn.Module`` classes out of a keyword ``ignore`` (a config holds paths and class
    names, which are text) and return them; a single path or class counts as a list of one."""
    ignore = options.get("ignore")
    if isinstance(ignore, (str, type)):
        ignore = options["ignore"] = [ignore]
    if not isinstance(ignore, (list, tuple)):
        return []  # absent, or left for the config to refuse with the option named

    def is_class(item: Any) -> bool:
        return isinstance(item, type) and issubclass(item, nn.Module)

    options["ignore"] = [item for item in ignore if not is_class(item)]
    return [item for item in ignore if is_class(item)]


__all__ = ["configure", "split_module_types"]
