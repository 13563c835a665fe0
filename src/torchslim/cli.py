"""The ``torchslim`` command line.

Every subcommand exits 0 on success and 2 on bad input, with a one-paragraph message naming the
bad value and what would be valid (never a traceback from inside torch).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from torchslim.core.errors import TorchSlimError

console = Console()
err_console = Console(stderr=True)

EPILOG = """examples:
  torchslim models                                   list the model families
  torchslim train --model resnet20 --data fashion-mnist --epochs 8 --out runs/teacher
  torchslim eval runs/teacher                        measure a trained model on its test set
  torchslim eval fashion-mnist-teacher fashion-mnist-student   the shipped defaults, side by side
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own exit code is 2 already; keep the text short
        self.print_usage(sys.stderr)
        err_console.print(f"[red]error:[/red] {message}")
        raise SystemExit(2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _int_list(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


# --- listings ---------------------------------------------------------------------------------


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


# --- train ------------------------------------------------------------------------------------


def _data_kwargs(args: argparse.Namespace) -> dict:
    kwargs = {"batch_size": args.batch_size, "seed": args.seed, "augment": not args.no_augment}
    if args.data == "fashion-mnist":
        kwargs["val_size"] = args.val_size
        if args.data_root:
            kwargs["root"] = args.data_root
    return kwargs


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from torchslim import data, models
    from torchslim.core.checkpoint import save_model
    from torchslim.core.io import atomic_write_json
    from torchslim.train import evaluate, fit

    out = Path(args.out)
    ckpt = out / "checkpoints"
    if (out / "model.json").exists() and not args.restart:
        raise TorchSlimError(f"{out} already holds a trained model; pass --restart to train it again "
                             "from scratch, or choose another --out.")
    if args.restart:
        shutil.rmtree(ckpt, ignore_errors=True)
    model_kwargs = {"width": args.width} if args.width is not None else {}
    data_kwargs = _data_kwargs(args)
    bundle = data.load(args.data, **data_kwargs)
    torch.manual_seed(args.seed)  # the initial weights follow --seed too
    model = models.create(args.model, num_classes=bundle.num_classes,
                          in_channels=bundle.input_shape[0], **model_kwargs)
    options = dict(optimizer=args.optimizer, lr=args.lr, schedule=args.schedule,
                   weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
                   seed=args.seed, channels_last=args.channels_last, warmup_epochs=args.warmup_epochs)
    console.print(f"training [bold]{args.model}[/bold] ({models.num_parameters(model):,} parameters) "
                  f"on {args.data} for {args.epochs} epochs -> {out}")
    history = fit(model, bundle, args.epochs, checkpoint_dir=ckpt, resume=True, threads=args.threads,
                  progress=not args.quiet, **options)
    val = evaluate(model, bundle.val) if bundle.val is not None else None
    metrics = {"test": history.test, "val": val, "train_seconds": history.seconds,
               "epochs": args.epochs, "resumed_from_epoch": history.resumed_from_epoch}
    save_model(model, out, {
        "data": {"name": args.data, "kwargs": data_kwargs},
        "fit": {"epochs": args.epochs, "threads": args.threads, **options},
        "history": history.to_dict(),
        "metrics": metrics,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    atomic_write_json(out / "metrics.json", metrics)
    console.print(f"test accuracy [bold]{history.test['accuracy']:.2f}%[/bold] after "
                  f"{history.seconds / 60:.1f} min of training; saved {out}/model.safetensors")
    return 0


# --- eval -------------------------------------------------------------------------------------


def _load_target(target: str):
    from torchslim import zoo
    from torchslim.core.checkpoint import load_model

    if target in zoo.ZOO:
        model, meta = zoo.load(target)
        return model, meta, zoo.path(target)
    path = Path(target)
    if not path.exists():
        raise TorchSlimError(
            f"{target!r} is neither a checkpoint directory nor a shipped model. Shipped models: "
            f"{', '.join(zoo.list())}; a checkpoint directory is what `torchslim train --out` wrote."
        )
    model, meta = load_model(path)
    return model, meta, path.parent if path.suffix == ".json" else path


def cmd_eval(args: argparse.Namespace) -> int:
    from torchslim import data
    from torchslim.measure import measure_many, print_records

    groups: dict[str, dict] = {}  # targets sharing a test set are timed together, interleaved
    for target in args.targets:
        model, meta, where = _load_target(target)
        source = meta.get("data") or {"name": "fashion-mnist", "kwargs": {}}
        kwargs = dict(source.get("kwargs", {}))
        if args.data_root and source["name"] == "fashion-mnist":
            kwargs["root"] = args.data_root
        key = json.dumps([source["name"], kwargs], sort_keys=True, default=str)
        group = groups.setdefault(key, {"data": (source["name"], kwargs), "models": {}, "artifacts": {}})
        group["models"][target] = model
        group["artifacts"][target] = where / "model.safetensors"
    records = []
    for group in groups.values():
        name, kwargs = group["data"]
        records += measure_many(group["models"], data.load(name, **kwargs).test, batch_sizes=args.batch_sizes,
                                threads=args.threads, artifacts=group["artifacts"])
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
    else:
        print_records(records, baseline=records[0] if len(records) > 1 else None, console=console)
    return 0


# --- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="torchslim",
        description="Make trained PyTorch models smaller and faster, and measure what you got.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    sub.add_parser("models", help="list the registered model families").set_defaults(func=cmd_models)
    sub.add_parser("datasets", help="list the registered datasets").set_defaults(func=cmd_datasets)

    train = sub.add_parser(
        "train", help="train a model and save a checkpoint",
        description="Train a registered model on a registered dataset. Progress is checkpointed every "
                    "epoch in OUT/checkpoints: run the same command again after an interruption and it "
                    "resumes from the last finished epoch. Writes OUT/model.safetensors, OUT/model.json "
                    "and OUT/metrics.json.")
    train.add_argument("--model", required=True, help="model name (see `torchslim models`)")
    train.add_argument("--data", default="fashion-mnist", help="dataset name (see `torchslim datasets`)")
    train.add_argument("--epochs", type=_positive_int, required=True, help="number of epochs")
    train.add_argument("--out", required=True, help="output directory")
    train.add_argument("--batch-size", type=_positive_int, default=128, help="training batch size (128)")
    train.add_argument("--optimizer", default="sgd", help="sgd (Nesterov momentum 0.9) or adamw")
    train.add_argument("--lr", type=float, default=None, help="peak learning rate (0.1 for sgd, 1e-3 for adamw)")
    train.add_argument("--schedule", default="onecycle", help="onecycle, cosine or constant")
    train.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up length in epochs")
    train.add_argument("--weight-decay", type=float, default=5e-4, help="weight decay (5e-4)")
    train.add_argument("--label-smoothing", type=float, default=0.0,
                       help="label smoothing (0; note: teachers trained with it distil worse)")
    train.add_argument("--width", type=float, default=None, help="channel width multiplier of the model family")
    train.add_argument("--seed", type=int, default=0, help="seed for init, data order, split and augmentation")
    train.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads")
    train.add_argument("--val-size", type=int, default=5000, help="training images held out for validation")
    train.add_argument("--no-augment", action="store_true", help="turn off random crop and flip")
    train.add_argument("--data-root", default=None, help="directory holding the dataset files")
    train.add_argument("--channels-last", action="store_true", help="channels-last memory format (faster convs on CPU)")
    train.add_argument("--restart", action="store_true", help="discard checkpoints in OUT and start over")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser(
        "eval", help="measure trained models: accuracy, size, MACs, latency",
        description="Measure one or more models on their dataset's whole test set: top-1 accuracy, "
                    "parameters, MACs, bytes on disk and latency (median with p10/p90). TARGET is a "
                    "directory written by `torchslim train` or a shipped model name "
                    "(fashion-mnist-teacher, fashion-mnist-student). With several targets the first "
                    "is the baseline for speed ratios.")
    ev.add_argument("targets", nargs="+", metavar="TARGET", help="checkpoint directory or shipped model name")
    ev.add_argument("--batch-sizes", type=_int_list, default=[1, 64], help="latency batch sizes (1,64)")
    ev.add_argument("--threads", type=_int_list, default=[1], help="thread counts to time (1)")
    ev.add_argument("--data-root", default=None, help="directory holding the dataset files")
    ev.add_argument("--json", action="store_true", help="print the records as JSON")
    ev.set_defaults(func=cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except TorchSlimError as exc:
        err_console.print(f"error: {exc}", highlight=False, markup=False, style="red")
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted; run the same command again to resume.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
