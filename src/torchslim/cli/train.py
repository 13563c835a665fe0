"""`torchslim train`: train a registered model and save a checkpoint.

The training options and the train-then-save flow are shared with `torchslim distill`.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

from torch import nn

from torchslim.cli.common import console, positive_int
from torchslim.core.errors import TorchSlimError


def add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="fashion-mnist", help="dataset name (see `torchslim datasets`)")
    parser.add_argument("--batch-size", type=positive_int, default=128, help="training batch size (128)")
    parser.add_argument("--val-size", type=int, default=5000, help="training images held out for validation")
    parser.add_argument("--no-augment", action="store_true", help="turn off random crop and flip")
    parser.add_argument("--data-root", default=None, help="directory holding the dataset files")


def add_fit_args(parser: argparse.ArgumentParser) -> None:
    """The options of ``torchslim.fit`` plus output handling, shared by train and distill."""
    parser.add_argument("--epochs", type=positive_int, required=True, help="number of epochs")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--optimizer", default="sgd", help="sgd (Nesterov momentum 0.9) or adamw")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (0.1 for sgd, 1e-3 for adamw)")
    parser.add_argument("--schedule", default="onecycle", help="onecycle, cosine or constant")
    parser.add_argument("--warmup-epochs", type=float, default=0.0, help="linear warm-up length in epochs")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="weight decay (5e-4)")
    parser.add_argument("--label-smoothing", type=float, default=0.0,
                        help="label smoothing (0; note: teachers trained with it distil worse)")
    parser.add_argument("--seed", type=int, default=0, help="seed for init, data order, split and augmentation")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory format (faster convs on CPU)")
    parser.add_argument("--restart", action="store_true", help="discard checkpoints in OUT and start over")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_parser(sub: Any) -> None:
    train = sub.add_parser(
        "train", help="train a model and save a checkpoint",
        description="Train a registered model on a registered dataset. Progress is checkpointed every "
                    "epoch in OUT/checkpoints: run the same command again after an interruption and it "
                    "resumes from the last finished epoch. Writes OUT/model.safetensors, OUT/model.json "
                    "and OUT/metrics.json.")
    train.add_argument("--model", required=True, help="model name (see `torchslim models`)")
    train.add_argument("--width", type=float, default=None, help="channel width multiplier of the model family")
    add_data_args(train)
    add_fit_args(train)
    train.set_defaults(func=cmd_train)


def data_kwargs(args: argparse.Namespace) -> dict:
    kwargs = {"batch_size": args.batch_size, "seed": args.seed, "augment": not args.no_augment}
    if args.data == "fashion-mnist":
        kwargs["val_size"] = args.val_size
        if args.data_root:
            kwargs["root"] = args.data_root
    return kwargs


def fit_options(args: argparse.Namespace) -> dict:
    return dict(optimizer=args.optimizer, lr=args.lr, schedule=args.schedule, weight_decay=args.weight_decay,
                label_smoothing=args.label_smoothing, seed=args.seed, channels_last=args.channels_last,
                warmup_epochs=args.warmup_epochs)


def prepare_out(args: argparse.Namespace) -> Path:
    """The output directory, refusing to overwrite a finished run unless --restart."""
    out = Path(args.out)
    if (out / "model.json").exists() and not args.restart:
        raise TorchSlimError(f"{out} already holds a trained model; pass --restart to train it again "
                             "from scratch, or choose another --out.")
    if args.restart:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return out


def train_and_save(trainee: nn.Module, export: nn.Module, bundle: Any, args: argparse.Namespace,
                   out: Path, extra: dict | None = None) -> dict:
    """Fit ``trainee`` (a model or a task), then save ``export`` with its record; returns metrics."""
    from torchslim.core.checkpoint import save_model
    from torchslim.core.io import atomic_write_json
    from torchslim.train import evaluate, fit

    options = fit_options(args)
    history = fit(trainee, bundle, args.epochs, checkpoint_dir=out / "checkpoints", resume=True,
                  threads=args.threads, progress=not args.quiet, **options)
    val = evaluate(export, bundle.val) if bundle.val is not None else None
    metrics = {"test": history.test, "val": val, "train_seconds": history.seconds, "epochs": args.epochs,
               "resumed_from_epoch": history.resumed_from_epoch}
    save_model(export, out, {
        "data": {"name": args.data, "kwargs": data_kwargs(args)},
        "fit": {"epochs": args.epochs, "threads": args.threads, **options},
        "history": history.to_dict(), "metrics": metrics,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(extra or {}),
    })
    atomic_write_json(out / "metrics.json", metrics)
    console.print(f"test accuracy [bold]{history.test['accuracy']:.2f}%[/bold] after "
                  f"{history.seconds / 60:.1f} min of training; saved {out}/model.safetensors")
    return metrics


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from torchslim import data, models

    out = prepare_out(args)
    bundle = data.load(args.data, **data_kwargs(args))
    torch.manual_seed(args.seed)  # the initial weights follow --seed too
    model = models.create(args.model, num_classes=bundle.num_classes, in_channels=bundle.input_shape[0],
                          **({"width": args.width} if args.width is not None else {}))
    console.print(f"training [bold]{args.model}[/bold] ({models.num_parameters(model):,} parameters) "
                  f"on {args.data} for {args.epochs} epochs -> {out}")
    train_and_save(model, model, bundle, args, out)
    return 0
