"""The ``torchslim`` command line.

Every subcommand exits 0 on success and 2 on bad input, with a one-paragraph message naming the
bad value and what would be valid (never a traceback from inside torch).

Start-up is kept short: ``--help``, ``--version`` and a mistyped flag answer in a fraction of a
second. Building a parser imports no torch (nor onnx, onnxruntime, flwr, matplotlib, numpy): every
command module imports what it runs inside the function that runs it. And :func:`main` builds in
full only the command it was given (:data:`COMMANDS` names the module that builds each); the
others get a stub that carries their line for ``torchslim --help``, so the program's help and
``--version`` import no command module at all (the flag definitions load pydantic models).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Sequence
from typing import Any

from torchslim._version import __version__
from torchslim.cli.common import Parser, err_console
from torchslim.core.errors import TorchSlimError

# command -> (the module of torchslim.cli that builds it, its line in `torchslim --help`), in the
# order the help lists them. A command missing here still works (the full parser is built when
# the command is not listed); tests/test_cli_conventions.py checks this table against the modules.
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("listings", "list the registered model families"),
    "datasets": ("listings", "list the registered datasets"),
    "losses": ("listings", "list the distillation losses, their options and what each computes"),
    "train": ("train", "train a model and save a checkpoint"),
    "distill": ("distill", "distil one or more teachers into a student"),
    "eval": ("evaluate", "measure trained models: accuracy, size, MACs, latency"),
    "prune": ("prune", "remove channels: a smaller, faster dense model"),
    "sparsify": ("prune", "zero the smallest weights (unstructured; smaller zipped, not faster)"),
    "quantize": ("quantize", "INT8 quantization for ONNX Runtime (static or dynamic)"),
    "qat": ("quantize", "quantization-aware training, then INT8 for ONNX Runtime"),
    "export": ("export", "FP32 ONNX export, checked against the torch model"),
    "text": ("text_methods", "sentence encoders: fewer layers, pruned heads, distillation, INT8, export"),
    "run": ("pipeline", "run one pipeline of a recipe (train, distill, prune, quantize, ...)"),
    "compare": ("pipeline", "run every strategy of a recipe and write the measured selection matrix"),
    "report": ("pipeline", "re-render a comparison's report from its matrix.json"),
    "search": ("search", "search pruning, distillation, student architecture and INT8 for the best models in a budget"),
    "federated": ("federated", "federated distillation (or FedAvg) across clients on Flower"),
}

EPILOG = """examples:
  torchslim models                                   list the model families
  torchslim train --model resnet20 --data fashion-mnist --epochs 8 --out runs/teacher
  torchslim distill --teachers fashion-mnist-teacher --student cnn-small --losses kd:T=4,weight=0.9 \\
      --losses ce:weight=0.1 --epochs 10 --out runs/kd   distil the shipped teacher into a small CNN
  torchslim eval runs/teacher                        measure a trained model on its test set
  torchslim eval fashion-mnist-teacher fashion-mnist-student   the shipped defaults, side by side
  torchslim prune fashion-mnist-teacher --ratio 0.5 --recover kd --epochs 6 --out runs/pruned   remove half the channels
  torchslim quantize fashion-mnist-teacher --mode static --calibration-batches 8 --out runs/int8
                                                     INT8 for ONNX Runtime; `torchslim eval runs/int8` measures it
  torchslim compare recipes/fashion-mnist.yaml --out runs/compare   every strategy, measured: the selection matrix
  torchslim search recipes/fashion-mnist.yaml --budget 60m --out runs/search   the best models a budget finds
"""


# A value that starts like a negative number: argparse reads "-5m" or "-1e3" as a flag (it knows only
# plain negative numbers), so `--budget -5m` would fail with "expected one argument" instead of the
# option's own message naming the value.
_NEGATIVE = re.compile(r"-\.?\d")


def valued_options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of ``parser`` and its subcommands that takes a value."""
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= valued_options(sub)
        elif action.option_strings and action.nargs != 0:
            found.update(action.option_strings)
    return found


def join_negative_values(argv: Sequence[str], valued: set[str]) -> list[str]:
    """``argv`` with ``--opt -5m`` written ``--opt=-5m`` for each option in ``valued``, so the option's
    own check sees the value."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in valued and i + 1 < len(argv) and _NEGATIVE.match(argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``torchslim`` parser: every command in full (``only=None``), or only the command ``only``
    in full and a one-line stub for each other (``only=""``: stubs alone)."""
    parser = Parser(prog="torchslim",
                    description="Make trained PyTorch models smaller and faster, and measure what you got.",
                    epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"torchslim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    if only is None:
        for module in dict.fromkeys(m for m, _ in COMMANDS.values()):
            _add(module, sub)
        return parser
    for name, (module, line) in COMMANDS.items():
        if name == only:
            _add(module, _Only(sub, name))
        else:
            sub.add_parser(name, help=line)
    return parser


def _add(module: str, sub: Any) -> None:
    builder = importlib.import_module(f"torchslim.cli.{module}")
    (getattr(builder, "add_parsers", None) or builder.add_parser)(sub)


class _Only:
    """Stands in for the subparsers action given to a module that builds several commands: the
    command ``name`` is added for real, the module's others are built and dropped."""

    def __init__(self, sub: Any, name: str) -> None:
        self.sub, self.name = sub, name

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if name == self.name:
            return self.sub.add_parser(name, **kwargs)
        kwargs.pop("help", None)
        return Parser(prog=f"torchslim {name}", **kwargs)


def command_in(argv: Sequence[str]) -> str | None:
    """Which command ``argv`` runs, for :func:`build_parser`: ``""`` when none (the program's own
    --help or --version), None when the word is no listed command (the full parser then decides)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return ""


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every subcommand's parser by name, read from ``parser`` (so a new command is found by the
    tests and the start-up benchmark without being listed anywhere else)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    parser = build_parser(command_in(argv))
    args = parser.parse_args(join_negative_values(argv, valued_options(parser)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except TorchSlimError as exc:
        # soft_wrap: one unbroken line per message, so a path or value in it can be copied and grepped
        err_console.print(f"error: {exc}", highlight=False, markup=False, style="red", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted; run the same command again to resume.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
