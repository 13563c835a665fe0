"""What every subcommand shares: consoles, the argument parser class and argument types."""

from __future__ import annotations

import argparse
import math
import sys

from rich.console import Console

# Piped output (CI logs, `| tee`) would be cut to 80 columns, which folds the measurement tables
# into unreadable slivers; a wide virtual terminal keeps each row on one line.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


class _Default(str):
    """A registry-name flag's default as written in the parser: a name the parser itself chose."""


class Parser(argparse.ArgumentParser):
    """argparse with a short red error and exit code 2 (argparse's own code for usage errors).

    argparse passes a string default through the flag's type even when the flag is not given; for a
    registry name (:func:`registered`) that would import the registry, and torch with it, before a
    mistyped flag could be reported. Defaults are marked so the type lets them through unchecked:
    only names the user wrote are looked up, and only once parsing reaches them.
    """

    def parse_known_args(self, args=None, namespace=None):
        for action in self._actions:
            if getattr(action.type, "registry_kind", None) and type(action.default) is str:
                action.default = _Default(action.default)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:
        self.print_usage(sys.stderr)
        err_console.print(f"error: {message}", style="red", highlight=False, markup=False, soft_wrap=True)
        raise SystemExit(2)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def int_list(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {low:g}"
    return f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False, integer: bool = False):
    """An argparse type: a finite number (NaN and infinity refused) within the given bounds.

    ``number(0, low_open=True)`` is > 0; ``number(0, 1, high_open=True)`` is in [0, 1)."""
    what = "an integer" if integer else "a number"
    bounds = "" if low is None else f" {_interval(low, high, low_open, high_open)}"

    def parse(text: str) -> float | int:
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}{bounds}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number{bounds}, got {text!r}")
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if below or above:
            raise argparse.ArgumentTypeError(f"expected {what}{bounds}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


# The importance criteria registered in torchslim.prune.IMPORTANCE, for help text: that registry
# lives beside torch-pruning code, and `torchslim prune --help` must not import torch to list it.
# tests/test_cli_conventions.py fails when the two differ.
IMPORTANCE_NAMES = ("l1", "l2", "fpgm", "taylor", "bn_scale", "lamp", "random")


def registered(kind: str):
    """An argparse type: a name registered in ``kind`` ("model", "dataset", "importance"),
    refused with the closest name and the valid ones. The registry (and torch with it) is imported
    only when a value is parsed, never to print help."""

    def parse(text: str) -> str:
        if isinstance(text, _Default):
            return str(text)
        registry = _registry(kind)
        if text not in registry:
            from torchslim.core.registry import did_you_mean

            raise argparse.ArgumentTypeError(f"unknown {kind} {text!r}.{did_you_mean(text, registry.list())} "
                                             f"Valid: {', '.join(registry.list())}")
        return text

    parse.__name__ = kind
    parse.registry_kind = kind
    return parse


def _registry(kind: str):
    if kind == "model":
        from torchslim.models import MODELS

        return MODELS
    if kind == "dataset":
        from torchslim.data import DATASETS

        return DATASETS
    from torchslim.prune import IMPORTANCE

    return IMPORTANCE


def conflict(message: str) -> None:
    """Two flags that contradict each other: exit 2 naming both (raised as a TorchSlimError)."""
    from torchslim.core.errors import TorchSlimError

    raise TorchSlimError(message)
