"""Options of a text function from its ``config`` and keyword arguments (keywords are sugar)."""

from __future__ import annotations

from typing import Any, TypeVar

from torchslim.options.base import Options, OptionsError

T = TypeVar("T", bound=Options)


def configure(options: type[T], where: str, config: T | None, given: dict[str, Any]) -> T:
    """``config`` with the keyword arguments ``given`` laid over it (the defaults when there is no
    config), validated as one.

    Raises:
        OptionsError: ``config`` of another class, or a bad or unknown option, named with ``where``.
    """
    if config is not None and not isinstance(config, options):
        raise OptionsError(f"{where}: config must be a {options.__name__}, got {type(config).__name__}.")
    if config is not None and not given:
        return config
    base = config.model_dump() if config is not None else {}
    return options.build(where, {**base, **given})


__all__ = ["configure"]
