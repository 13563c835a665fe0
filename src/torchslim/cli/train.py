"""`torchslim train`: train a registered model and save a checkpoint.

The training options and the train-then-save flow are shared with `torchslim distill`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchslim.cli.common import console, number, positive_int, registered
from torchslim.core.errors import TorchSlimError
from torchslim.options.cli import add_options, from_args
from torchslim.options.fit import FitConfig, Optimizer, Schedule, TrainConfig
from torchslim.pipeline.schema import DataConfig

if TYPE_CHECKING:  # torch is imported by the commands that run, never by `--help`
    from torch import nn


def add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=registered("dataset"), default=DataConfig.model_fields["name"].default,
                        help="dataset name (see `torchslim datasets`)")
    parser.add_argument("--batch-size", type=positive_int, default=128, help="training batch size (128)")
    parser.add_argument("--val-size", type=number(0, integer=True), default=None,
                        help="training images held out for validation (default: the dataset's)")
    parser.add_argument("--no-augment", action="store_true", help="turn off random crop and flip")
    parser.add_argument("--data-root", default=None, help="directory holding the dataset files")


def add_fit_args(parser: argparse.ArgumentParser, options: type[FitConfig] = FitConfig) -> None:
    """The flags of ``options`` (generated from the class) plus output handling, shared by train
    and distill."""
    add_options(parser, options, title="training options")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    parser.add_argument("--force", action="store_true",
                        help="OUT holds a finished or different run: discard it and start afresh")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(options=options)


def resolve_options(args: argparse.Namespace) -> FitConfig:
    """The command's options from its flags, validated once (a bad value exits 2 naming its flag),
    and spread over ``args`` (the seed resolved: none means 0) for the code that reads them."""
    if isinstance(getattr(args, "config", None), FitConfig):
        return args.config
    cfg = from_args(args.options, args)
    for name in type(cfg).model_fields:
        setattr(args, name, getattr(cfg, name))
    args.seed = cfg.seed if cfg.seed is not None else 0
    args.config = cfg
    return cfg


# derived from the options' types, for the commands whose flags are not generated yet
OPTIMIZERS, SCHEDULES = typing.get_args(Optimizer), typing.get_args(Schedule)


def add_parser(sub: Any) -> None:
    train = sub.add_parser(
        "train", help="train a model and save a checkpoint",
        description="Train a registered model on a registered dataset. Progress is checkpointed every "
                    "epoch in OUT/checkpoints: run the same command again after an interruption and it "
                    "resumes from the last finished epoch; run it after it finished and it says so. Writes "
                    "OUT/metrics.json, OUT/model.safetensors and OUT/model.json (last: the run is finished "
                    "when it is there).",
        epilog="examples:\n  torchslim train --model cnn-small --data fashion-mnist --epochs 8 --out runs/student\n"
               "  torchslim train --model resnet20 --epochs 12 --lr 0.1 --channels-last --out runs/teacher",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(train)
    add_fit_args(train, TrainConfig)
    train.set_defaults(func=cmd_train)


def data_kwargs(args: argparse.Namespace) -> dict:
    """The dataset loader's keyword arguments from the data flags; a flag the dataset has no use for
    (``--data-root`` for a generated dataset) is refused, never dropped."""
    from torchslim.data.registry import loader_kwargs

    given = {key: (flag, value) for key, flag, value in (
        ("val_size", "--val-size", args.val_size), ("root", "--data-root", args.data_root),
        ("augment", "--no-augment", False if args.no_augment else None)) if value is not None}
    return loader_kwargs(args.data, {"batch_size": args.batch_size, "seed": args.seed, "augment": True}, given)


def fit_options(args: argparse.Namespace) -> dict:
    return resolve_options(args).fit_options(args.seed)


def prepare_out(args: argparse.Namespace) -> Path:
    """The output directory, refusing to overwrite a finished run unless --force; checked with
    the flags that must agree before any data is loaded."""
    from torchslim.pipeline.preflight import check_out

    resolve_options(args)
    out = check_out(args.out)
    if (out / "model.json").exists() and not args.force:
        raise TorchSlimError(f"{out} already holds a trained model; pass --force to train it again "
                             "from scratch, or choose another --out.")
    if args.force:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return out


# -- the run's record: complete or absent ---------------------------------------------------------
#
# A run commits its record in this order: metrics.json, model.safetensors, model.json. model.json is
# written last (atomically, naming the weights' hash), so it is the commit marker: a folder with it
# holds a finished run; a folder without it holds an unfinished one, which the same command resumes
# from OUT/checkpoints. OUT/checkpoints/run.json names the options of an unfinished run.

RUN_FILE = "run.json"
# Options that change where output goes or how it is shown, not what the run computes.
_NOT_IDENTITY = {"func", "out", "force", "quiet", "threads", "data_root", "options", "config"}


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options that decide what a run computes, as plain JSON (compared on every rerun)."""
    chosen = {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_IDENTITY}
    return json.loads(json.dumps(chosen, default=str))


def _differences(saved: dict[str, Any], now: dict[str, Any]) -> str:
    keys = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    return "; ".join(f"--{k.replace('_', '-')}: {saved.get(k)!r} there, {now.get(k)!r} now" for k in keys)


def _finished_record(out: Path) -> dict[str, Any]:
    """model.json of a finished run in ``out``, checked against its weights."""
    from torchslim.core.tensors import sha256_file
    from torchslim.models.checkpoint import WEIGHTS, read_meta

    meta = read_meta(out)
    weights = out / WEIGHTS
    if not weights.is_file() or meta.get("sha256") != sha256_file(weights):
        problem = "is missing" if not weights.is_file() else "does not match the SHA-256 in model.json"
        raise TorchSlimError(f"{out} holds a damaged record of a finished run: {weights} {problem}. Pass "
                             "--force to discard it and train again, or choose another --out.")
    return meta


def open_run(args: argparse.Namespace) -> Path | None:
    """The output directory to train into, or None when it already holds this very run, finished.

    A finished run of other options, or an unfinished one of other options, is refused with the
    options that differ; ``--force`` discards whatever ``OUT`` holds. Leftover temporary files of
    killed runs are removed.

    Raises:
        TorchSlimError: ``--out`` is a file, holds another run, or holds a damaged record.
    """
    from torchslim.core.io import sweep
    from torchslim.pipeline.preflight import check_out

    resolve_options(args)  # bad or contradicting options and an unusable --out fail before any work
    out = check_out(args.out)
    if out.exists() and not out.is_dir():
        raise TorchSlimError(f"--out {out} is a file; give a directory (it is created when missing).")
    sweep(out)
    if args.force:
        discard_run(out)
        return out
    now = run_options(args)
    if (out / "model.json").exists():
        meta = _finished_record(out)
        if not isinstance(meta.get("run"), dict):
            raise TorchSlimError(f"{out} already holds a trained model whose options were not recorded; "
                                 "pass --force to train it again from scratch, or choose another --out.")
        if differ := _differences(meta["run"], now):
            raise TorchSlimError(f"{out} already holds a finished run with other options ({differ}). Pass "
                                 "--force to discard it and train again, or choose another --out.")
        accuracy = ((meta.get("metrics") or {}).get("test") or {}).get("accuracy")
        shown = f" (test accuracy {accuracy:.2f}%)" if isinstance(accuracy, (int, float)) else ""
        console.print(f"{out} already holds this run, finished{shown}: nothing to do. Pass --force "
                      "to train it again.")
        return None
    saved = _unfinished_options(out)
    if saved is not None and (differ := _differences(saved, now)):
        raise TorchSlimError(f"{out} holds an unfinished run with other options ({differ}). Run the same "
                             "command as before to resume it, pass --force to discard it, or choose "
                             "another --out.")
    return out


def _unfinished_options(out: Path) -> dict[str, Any] | None:
    path = out / "checkpoints" / RUN_FILE
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TorchSlimError(f"{path} is damaged ({exc}); pass --force to discard the unfinished run "
                             "in it, or choose another --out.") from None
    if not isinstance(saved, dict):
        raise TorchSlimError(f"{path} holds {type(saved).__name__}, not the options of a run; pass "
                             "--force to discard the unfinished run in it, or choose another --out.")
    return saved


def discard_run(out: Path) -> None:
    """Remove a run's record and training state from ``out`` (the commit marker first)."""
    from torchslim.models.checkpoint import META, WEIGHTS

    for name in (META, "metrics.json", WEIGHTS):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)


def train_and_save(trainee: nn.Module, export: nn.Module, bundle: Any, args: argparse.Namespace,
                   out: Path, extra: dict | None = None) -> dict:
    """Fit ``trainee`` (a model or a task), then save ``export`` with its record; returns metrics.

    The record is committed metrics first and ``model.json`` last (see above), so a kill or a full
    disk at any instant leaves a folder that the same command resumes.
    """
    from torchslim.core.io import atomic_write_json
    from torchslim.models.checkpoint import save_model
    from torchslim.train import evaluate, fit

    options = fit_options(args)
    atomic_write_json(out / "checkpoints" / RUN_FILE, run_options(args))
    history = fit(trainee, bundle, args.epochs, checkpoint_dir=out / "checkpoints", resume=True,
                  threads=args.threads, progress=not args.quiet, **options)
    val = evaluate(export, bundle.val) if bundle.val is not None else None
    metrics = {"test": history.test, "val": val, "train_seconds": history.seconds, "epochs": args.epochs,
               "resumed_from_epoch": history.resumed_from_epoch}
    atomic_write_json(out / "metrics.json", metrics)
    save_model(export, out, {
        "data": {"name": args.data, "kwargs": data_kwargs(args)},
        "fit": {"epochs": args.epochs, "threads": args.threads, **options},
        "history": history.to_dict(), "metrics": metrics, "run": run_options(args),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(extra or {}),
    })
    console.print(f"test accuracy [bold]{history.test['accuracy']:.2f}%[/bold] after "
                  f"{history.seconds / 60:.1f} min of training; saved {out}/model.safetensors")
    return metrics


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from torchslim import data, models

    cfg = resolve_options(args)
    if cfg.model is None:
        raise TorchSlimError("torchslim train needs --model: a registered model to train from fresh weights (see "
                             "`torchslim models`); to fine-tune a trained model, use a recipe step `train` without "
                             "`model`.")
    try:
        models.MODELS.get(cfg.model)
    except TorchSlimError as exc:  # an unknown name: the closest and the valid ones
        raise TorchSlimError(f"--model: {exc}") from None
    out = open_run(args)
    if out is None:  # this very run already finished
        return 0
    bundle = data.load(args.data, **data_kwargs(args))
    torch.manual_seed(args.seed)  # the initial weights follow --seed too
    model = models.create(args.model, num_classes=bundle.num_classes, in_channels=bundle.input_shape[0],
                          **cfg.model_kwargs, **({"width": args.width} if args.width is not None else {}),
                          **({"depth": args.depth} if args.depth is not None else {}))
    console.print(f"training [bold]{args.model}[/bold] ({models.num_parameters(model):,} parameters) "
                  f"on {args.data} for {args.epochs} epochs -> {out}")
    train_and_save(model, model, bundle, args, out)
    return 0
