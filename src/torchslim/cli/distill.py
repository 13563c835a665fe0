"""`torchslim distill`: train a student from one or more teachers with weighted losses.

Losses are given as ``NAME[:KEY=VALUE,...]``; ``weight=`` is the loss's weight in the total:
``--loss kd:T=4,weight=0.9 --loss ce:weight=0.1``. Feature losses name module paths:
``--loss fitnet:student_tap=features.2,teacher_tap=layer2,weight=1``.
"""

from __future__ import annotations

import argparse
from typing import Any

from torchslim.cli.common import console, positive_int
from torchslim.cli.text import add_text_args, cmd_text_distill, is_text
from torchslim.cli.train import add_data_args, add_fit_args, data_kwargs, open_run, train_and_save
from torchslim.core.errors import TorchSlimError


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def parse_loss(text: str) -> tuple[str, dict[str, Any]]:
    """``"kd:T=4,weight=0.9"`` -> ``("kd", {"T": 4, "weight": 0.9})``."""
    name, _, rest = text.partition(":")
    kwargs = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise argparse.ArgumentTypeError(f"loss option {item!r} in {text!r} must be KEY=VALUE")
        kwargs[key.strip()] = _value(value.strip())
    if not name:
        raise argparse.ArgumentTypeError(f"a loss needs a name before ':', got {text!r}")
    return name.strip(), kwargs


def float_list(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "distill", help="distil one or more teachers into a student",
        description="Train STUDENT (a registered model) to imitate TEACHER (a checkpoint directory "
                    "or a shipped model name), with weighted losses (see `torchslim losses`). "
                    "Checkpointed every epoch; run the same command again to resume.",
        epilog="example:\n  torchslim distill --teacher fashion-mnist-teacher --student cnn-small "
               "--loss kd:T=4,weight=0.9 --loss ce:weight=0.1 --epochs 10 --out runs/kd",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", action="append", required=True,
                   help="teacher checkpoint or shipped model name; repeat for several teachers")
    p.add_argument("--teacher-weights", type=float_list, default=None, help="weights of several teachers, e.g. 0.5,0.5")
    p.add_argument("--multi-teacher", default="mean", choices=("mean", "each"),
                   help="logit losses see the mean of the teachers' softened outputs, or one term each")
    p.add_argument("--student", default=None, help="student model name (see `torchslim models`); for text "
                   "data the student is made from the teacher (--student-layers, --prune-heads)")
    p.add_argument("--width", type=float, default=None, help="student channel width multiplier")
    p.add_argument("--loss", action="append", type=parse_loss, default=None, metavar="NAME[:K=V,...]",
                   help="a loss and its options, e.g. kd:T=4,weight=0.9; repeat for several (text default: "
                   "embed-cos)")
    p.add_argument("--cache", choices=("none", "memory", "disk"), default="none",
                   help="compute teacher logits once and reuse them (disk: memory-mapped under OUT/cache)")
    p.add_argument("--cache-draws", type=positive_int, default=None,
                   help="augmented epochs recorded in the cache and replayed (default: every epoch)")
    p.add_argument("--mix", choices=("mixup", "cutmix"), default=None,
                   help="mix images once per batch, seen identically by teacher and student")
    add_data_args(p)
    add_fit_args(p)
    add_text_args(p)
    # None = the mode's own default (image: SGD one-cycle, weight decay 5e-4; text: AdamW cosine, 0.01).
    p.set_defaults(func=cmd_distill, optimizer=None, schedule=None, weight_decay=None)


def build_losses(specs: list[tuple[str, dict]], num_data: int) -> list:
    from torchslim.distill import losses as L

    built = []
    for name, kwargs in specs:
        kwargs = dict(kwargs)
        weight = kwargs.pop("weight", 1.0)
        if name == "crd":
            kwargs.setdefault("num_data", num_data)
        built.append((L.create(name, **kwargs), weight))
    return built


def cmd_distill(args: argparse.Namespace) -> int:
    import torch

    from torchslim import data, models
    from torchslim.cli.evaluate import load_target
    from torchslim.distill import DistillTask

    default = [("embed-cos", {})] if is_text(args) else []
    check_losses_known(args.loss or default)  # a typo fails before any data or teacher is loaded
    if is_text(args):
        return cmd_text_distill(args)
    if not args.student:
        raise TorchSlimError("--student is required: the registered model to train (see `torchslim models`).")
    args.optimizer = args.optimizer or "sgd"
    args.schedule = args.schedule or "onecycle"
    args.weight_decay = 5e-4 if args.weight_decay is None else args.weight_decay
    out = open_run(args)
    if out is None:  # this very run already finished
        return 0
    bundle = data.load(args.data, **data_kwargs(args))
    teachers = {}
    for i, target in enumerate(args.teacher):
        teacher, _, _ = load_target(target)
        teachers[f"teacher{i}" if len(args.teacher) > 1 else "teacher"] = teacher
    torch.manual_seed(args.seed)
    student = models.create(args.student, num_classes=bundle.num_classes, in_channels=bundle.input_shape[0],
                            **({"width": args.width} if args.width is not None else {}))
    losses = build_losses(args.loss, len(bundle.train.dataset))
    task = DistillTask(student, teachers, losses, teacher_weights=args.teacher_weights,
                       multi_teacher=args.multi_teacher, mix=args.mix)
    if args.cache != "none":
        draws = args.cache_draws or args.epochs
        task.use_cache(bundle.train, draws=draws, directory=out / "cache" if args.cache == "disk" else None,
                       log=console.print)
    console.print(f"distilling {', '.join(args.teacher)} into [bold]{args.student}[/bold] "
                  f"({models.num_parameters(student):,} parameters) with "
                  f"{', '.join(n for n, _ in args.loss)} for {args.epochs} epochs -> {out}")
    try:
        train_and_save(task, student, bundle, args, out, extra={"distill": {
            "teachers": args.teacher, "losses": [[n, kw] for n, kw in args.loss],
            "cache": args.cache, "mix": args.mix}})
    finally:
        task.close()
    return 0


def check_losses_known(specs: list[tuple[str, dict]]) -> None:
    from torchslim.distill.losses import LOSSES

    for name, _ in specs:
        if name not in LOSSES:
            LOSSES.get(name)  # raises with the valid names and the closest one
    if not specs:
        raise TorchSlimError("Give at least one --loss (see `torchslim losses`).")
