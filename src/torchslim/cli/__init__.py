"""The ``torchslim`` command line.

Every subcommand exits 0 on success and 2 on bad input, with a one-paragraph message naming the
bad value and what would be valid (never a traceback from inside torch).

Building the parser imports no torch (nor onnx, onnxruntime, flwr, matplotlib, numpy): every
command module imports what it runs inside the function that runs it, so ``--help``,
``--version`` and a mistyped flag answer in a fraction of a second.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from torchslim.cli import distill, evaluate, export, federated, listings, pipeline, prune, quantize, train
from torchslim._version import __version__
from torchslim.cli.common import Parser, err_console
from torchslim.core.errors import TorchSlimError

EPILOG = """examples:
  torchslim models                                   list the model families
  torchslim train --model resnet20 --data fashion-mnist --epochs 8 --out runs/teacher
  torchslim distill --teachers fashion-mnist-teacher --student cnn-small --losses kd:T=4,weight=0.9 \
      --losses ce:weight=0.1 --epochs 10 --out runs/kd   distil the shipped teacher into a small CNN
  torchslim eval runs/teacher                        measure a trained model on its test set
  torchslim eval fashion-mnist-teacher fashion-mnist-student   the shipped defaults, side by side
  torchslim prune fashion-mnist-teacher --ratio 0.5 --recover kd --epochs 6 --out runs/pruned   remove half the channels
  torchslim quantize fashion-mnist-teacher --mode static --calibration-batches 8 --out runs/int8
                                                     INT8 for ONNX Runtime; `torchslim eval runs/int8` measures it
  torchslim compare recipes/fashion-mnist.yaml --out runs/compare   every strategy, measured: the selection matrix
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="torchslim",
                    description="Make trained PyTorch models smaller and faster, and measure what you got.",
                    epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"torchslim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    listings.add_parsers(sub)
    train.add_parser(sub)
    distill.add_parser(sub)
    evaluate.add_parser(sub)
    prune.add_parser(sub)
    quantize.add_parser(sub)
    export.add_parser(sub)
    pipeline.add_parsers(sub)
    federated.add_parser(sub)
    return parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every subcommand's parser by name, read from ``parser`` (so a new command is found by the
    tests and the start-up benchmark without being listed anywhere else)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
