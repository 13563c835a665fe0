"""What every subcommand shares: consoles, the argument parser class and argument types."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

# Piped output (CI logs, `| tee`) would be cut to 80 columns, which folds the measurement tables
# into unreadable slivers; a wide virtual terminal keeps each row on one line.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


class Parser(argparse.ArgumentParser):
    """argparse with a short red error and exit code 2 (argparse's own code for usage errors)."""

    def error(self, message: str) -> None:
        self.print_usage(sys.stderr)
        err_console.print(f"error: {message}", style="red", highlight=False, markup=False)
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
