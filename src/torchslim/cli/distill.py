"""`torchslim distill`: train a student from one or more teachers with weighted losses.

The flags of the method are generated from :class:`~torchslim.distill.config.DistillConfig` (the
recipe's ``distill`` step): ``--teachers`` names checkpoints or shipped models, ``--losses`` takes
one loss per occurrence as ``NAME[:KEY=VALUE,...]`` (``weight=`` its weight in the total,
``teacher=`` the teacher it reads): ``--losses kd:T=4,weight=0.9 --losses ce:weight=0.1``. Feature
losses name module paths: ``--losses fitnet:student_tap=features.2,teacher_tap=layer2 --cache none``.
"""

from __future__ import annotations

import argparse
from typing import Any

from torchslim.cli.common import conflict, console
from torchslim.cli.text import add_text_args, cmd_text_distill, is_text, text_student_flags
from torchslim.cli.train import (
    add_data_args,
    add_fit_args,
    data_kwargs,
    open_run,
    resolve_options,
    train_and_save,
)
from torchslim.core.errors import TorchSlimError
from torchslim.distill.config import DistillConfig


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "distill", help="distil one or more teachers into a student",
        description="Train STUDENT (a registered model) to imitate TEACHER (a checkpoint directory "
                    "or a shipped model name), with weighted losses (see `torchslim losses`). "
                    "Checkpointed every epoch; run the same command again to resume.",
        epilog="examples:\n  torchslim distill --teachers fashion-mnist-teacher --student cnn-small "
               "--losses kd:T=4,weight=0.9 --losses ce:weight=0.1 --epochs 10 --out runs/kd\n"
               "  torchslim distill --teachers fashion-mnist-teacher --student cnn-small --losses "
               "at:student_tap=features.3,teacher_tap=layer3 --losses kd --cache none --epochs 10 --out runs/at",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    # Every DistillConfig field is a flag; a text run reads the ones given with its own defaults.
    add_fit_args(p, DistillConfig)
    add_text_args(p)
    p.set_defaults(func=cmd_distill)


def cmd_distill(args: argparse.Namespace) -> int:
    check_distill_flags(args)
    if is_text(args):
        return cmd_text_distill(text_args(args))
    if not hasattr(args, "student"):
        raise TorchSlimError("--student is required: the registered model to train (see `torchslim models`).")
    cfg = resolve_options(args)  # every option validated before the registry, data or teachers load
    _check_student(cfg.student)
    # The run's record (compared on every rerun) holds the nested options as plain JSON.
    args.losses = [item.model_dump(mode="json") for item in cfg.losses]
    args.temperature = cfg.temperature.model_dump(mode="json") if cfg.temperature else None
    out = open_run(args)
    if out is None:  # this very run already finished
        return 0
    return _run(args, cfg, out)


def _check_student(name: str) -> None:
    from torchslim.core.errors import UnknownNameError
    from torchslim.models import MODELS

    try:
        MODELS.get(name)
    except UnknownNameError as exc:  # the message has the valid names and the closest one
        raise TorchSlimError(f"--student = {name!r} is invalid: {exc}") from None


def _run(args: argparse.Namespace, cfg: DistillConfig, out: Any) -> int:
    import time

    import torch

    from torchslim import data, models
    from torchslim.cli.evaluate import load_target
    from torchslim.distill import make_task
    from torchslim.distill.run import cache_seconds, load_teachers, total_seconds

    bundle = data.load(args.data, **data_kwargs(args))
    teachers = load_teachers(cfg.teachers, lambda source: load_target(source)[0])
    torch.manual_seed(args.seed)  # the student's initial weights follow --seed
    # --model-kwargs may name any factory argument; --width and --depth win over those among them
    kwargs = {"num_classes": bundle.num_classes, "in_channels": bundle.input_shape[0], **cfg.model_kwargs,
              **({"width": cfg.width} if cfg.width is not None else {}),
              **({"depth": cfg.depth} if cfg.depth is not None else {})}
    student = models.create(cfg.student, **kwargs)
    losses = [item.model_dump(mode="json") for item in cfg.losses]
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # the teacher cache is built with the run's threads
    began = time.perf_counter()
    task = make_task(student, teachers, cfg, train=bundle.train, cache_dir=out / "cache", log=console.print)
    cache = cache_seconds(task)
    console.print(f"distilling {', '.join(cfg.teachers)} into [bold]{cfg.student}[/bold] "
                  f"({models.num_parameters(student):,} parameters) with "
                  f"{', '.join(i['name'] for i in losses)} for {cfg.epochs} epochs -> {out}")
    try:
        metrics = train_and_save(task, student, bundle, args, out, extra={"distill": {
            "teachers": cfg.teachers, "losses": losses, "cache": cfg.cache, "mix": cfg.mix, "cache_seconds": cache}})
    finally:
        task.close()
    total = total_seconds(began, cache, metrics["train_seconds"])
    console.print(f"teacher cache {cache:.1f} s + training {metrics['train_seconds'] / 60:.1f} min: "
                  f"{total / 60:.1f} min in all (with evaluation and saving)")
    return 0


def text_args(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` as the text command reads the shared flags: ``teacher`` (the sources of
    ``--teachers``), ``loss`` (``(name, options)`` of each ``--losses``), and ``student``, ``width``,
    ``depth`` and ``mix`` (None when not given); the generated ``teachers``/``losses`` are taken off so the
    text options read only their own fields."""
    from torchslim.options.cli import given

    shared = given(DistillConfig, args)
    args.teacher = shared.get("teachers", [])
    args.loss = [(item.pop("name"), item) for item in shared.get("losses", [])]
    for name in ("teachers", "losses"):
        if hasattr(args, name):
            delattr(args, name)
    for name in ("student", "width", "depth", "mix"):
        setattr(args, name, shared.get(name))
    return args


def check_distill_flags(args: argparse.Namespace) -> None:
    """Flags the chosen mode needs, or would silently ignore (the options' own rules are the
    config's, checked when it is built)."""
    if not hasattr(args, "teachers"):
        conflict("--teachers is required: the teacher checkpoint directories or shipped model names "
                 "(see `torchslim models`), comma-separated for several.")
    text_only = text_student_flags(args)
    if text_only and not is_text(args):
        conflict(f"{text_only[0]} makes a text student, but --data {args.data} is an image dataset; use "
                 "--student for image models, or a text dataset (--data wordnet-glosses).")
