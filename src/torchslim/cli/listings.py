"""`torchslim models`, `torchslim datasets`, `torchslim losses`: what is registered."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from torchslim.cli.common import console


def add_parsers(sub: Any) -> None:
    sub.add_parser("models", help="list the registered model families").set_defaults(func=cmd_models)
    sub.add_parser("datasets", help="list the registered datasets").set_defaults(func=cmd_datasets)
    sub.add_parser("losses", help="list the distillation losses and their options").set_defaults(func=cmd_losses)


def cmd_models(args: argparse.Namespace) -> int:
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
    from torchslim import data

    table = Table(title="Registered datasets")
    table.add_column("name")
    table.add_column("description")
    for name in data.list():
        doc = (data.DATASETS.get(name).__doc__ or "").strip().splitlines()[0]
        table.add_row(name, doc)
    console.print(table)
    return 0


def cmd_losses(args: argparse.Namespace) -> int:
    from torchslim.distill.losses import LOSSES

    table = Table(title="Distillation losses (use as --loss NAME:KEY=VALUE,...,weight=W)")
    for col in ("name", "kind", "options (type, bounds, default)", "description"):
        table.add_column(col)
    for name in LOSSES.list():
        cls = LOSSES.get(name)  # the options as recipes and --loss check them: one definition
        table.add_row(name, getattr(cls, "kind", ""), cls.describe_options(),
                      (cls.__doc__ or "").strip().splitlines()[0])
    console.print(table)
    return 0
