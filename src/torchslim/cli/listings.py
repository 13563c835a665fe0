"""`torchslim models`, `torchslim datasets`, `torchslim losses`: what is registered."""

from __future__ import annotations

import argparse
import inspect
import re
from typing import Any

from torchslim.cli.common import console

# Google-style docstring sections that follow a description: arguments and errors, which the
# options column already states in checked form.
_SECTION = re.compile(r"^(Args|Arguments|Raises|Returns|Attributes|Example|Examples):\s*$")


def add_parsers(sub: Any) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    sub.add_parser("models", help="list the registered model families",
                   description="List the registered model families with their parameter counts (10 classes, "
                               "1 input channel) and a line on each.",
                   epilog="example:\n  torchslim models", formatter_class=raw).set_defaults(func=cmd_models)
    sub.add_parser("datasets", help="list the registered datasets",
                   description="List the registered datasets (the names --data takes).",
                   epilog="example:\n  torchslim datasets", formatter_class=raw).set_defaults(func=cmd_datasets)
    sub.add_parser("losses", help="list the distillation losses, their options and what each computes",
                   description="List every distillation loss: its kind, its options (type, bounds, default) and "
                               "its whole description (the method, its paper and its equation).",
                   epilog="example:\n  torchslim losses\n  torchslim distill --teachers fashion-mnist-teacher "
                          "--student cnn-small --losses dkd:T=4 --losses ce:weight=0.1 --epochs 1 --out runs/dkd",
                   formatter_class=raw).set_defaults(func=cmd_losses)


def cmd_models(args: argparse.Namespace) -> int:
    from rich.table import Table

    from torchslim import models

    table = Table(title="Registered models (num_classes=10, in_channels=1)")
    for col in ("name", "parameters", "description"):
        table.add_column(col, justify="right" if col == "parameters" else "left")
    for name in models.list():
        factory = models.MODELS.get(name)
        params = models.num_parameters(models.create(name))
        table.add_row(name, f"{params:,}", (factory.__doc__ or "").strip().splitlines()[0])
    console.print(table)
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from rich.table import Table

    from torchslim import data

    table = Table(title="Registered datasets")
    table.add_column("name")
    table.add_column("description")
    for name in data.list():
        doc = (data.DATASETS.get(name).__doc__ or "").strip().splitlines()[0]
        table.add_row(name, doc)
    console.print(table)
    return 0


def description(doc: str | None) -> str:
    """A docstring's description: every paragraph before its Args/Raises/... sections, dedented."""
    kept = []
    for line in inspect.cleandoc(doc or "").splitlines():
        if _SECTION.match(line):
            break
        kept.append(line)
    return "\n".join(kept).strip()


def cmd_losses(args: argparse.Namespace) -> int:
    from torchslim.distill.losses import LOSSES

    console.print("Distillation losses (use as --losses NAME:KEY=VALUE,...,weight=W)", style="bold", highlight=False)
    for name in LOSSES.list():
        cls = LOSSES.get(name)  # the options as recipes and --losses check them: one definition
        text = "\n".join(f"    {line}".rstrip() for line in description(cls.__doc__).splitlines())
        # markup off and soft wrap: equations hold [brackets] and long lines must stay as written
        console.print(f"\n{name} ({getattr(cls, 'kind', '')})\n  options: {cls.describe_options()}\n{text}",
                      markup=False, highlight=False, soft_wrap=True)
    return 0
