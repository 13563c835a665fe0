"""`torchslim distill`: train a student from one or more teachers with weighted losses.

Losses are given as ``NAME[:KEY=VALUE,...]``; ``weight=`` is the loss's weight in the total:
``--loss kd:T=4,weight=0.9 --loss ce:weight=0.1``. Feature losses name module paths:
``--loss fitnet:student_tap=features.2,teacher_tap=layer2,weight=1``.
"""

from __future__ import annotations

import argparse
from typing import Any

from torchslim.cli.common import conflict, console, number, positive_int, registered
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
        if key.strip() in kwargs:
            raise argparse.ArgumentTypeError(f"loss option {key.strip()!r} is given twice in {text!r}")
        kwargs[key.strip()] = _value(value.strip())
    if not name:
        raise argparse.ArgumentTypeError(f"a loss needs a name before ':', got {text!r}")
    return name.strip(), kwargs


def float_list(text: str) -> list[float]:
    """Comma-separated finite numbers >= 0 (teacher weights)."""
    one = number(0)
    try:
        return [one(t) for t in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected comma-separated finite numbers >= 0, got {text!r}") from None


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
    p.add_argument("--student", type=registered("model"), default=None, help="student model name (see `torchslim models`); for text "
                   "data the student is made from the teacher (--student-layers, --prune-heads)")
    p.add_argument("--width", type=number(0, low_open=True), default=None, help="student channel width multiplier")
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
    check_distill_flags(args)
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
    """Every ``--loss`` names a registered loss with options of the right type and range."""
    from torchslim.distill.losses import LOSSES, describe_problems

    for name, kwargs in specs:
        if name not in LOSSES:
            LOSSES.get(name)  # raises with the valid names and the closest one
        options = {k: v for k, v in kwargs.items() if k not in ("weight", "teacher")}  # create()'s own keys
        weight = kwargs.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < float("inf"):
            raise TorchSlimError(f"--loss {name}: weight={weight!r} must be a finite number >= 0.")
        problems = LOSSES.get(name).check_options(options, ("num_data",) if name == "crd" else ())
        if problems:
            raise TorchSlimError(f"--loss {name}:{','.join(f'{k}={v}' for k, v in kwargs.items())}: "
                                 f"{describe_problems(LOSSES.get(name), problems)}")
    if not specs:
        raise TorchSlimError("Give at least one --loss (see `torchslim losses`).")


def check_distill_flags(args: argparse.Namespace) -> None:
    """Flags that contradict each other, or that the chosen mode would silently ignore."""
    if args.cache_draws is not None and args.cache == "none":
        conflict(f"--cache-draws {args.cache_draws} records teacher outputs, but --cache none computes them live; "
                 "use --cache memory or disk, or drop --cache-draws.")
    if args.mix and args.cache != "none":
        conflict(f"--mix {args.mix} mixes images per batch, which needs the live teacher, but --cache {args.cache} "
                 "replays recorded outputs; add --cache none.")
    if args.teacher_weights is not None and len(args.teacher_weights) != len(args.teacher):
        conflict(f"--teacher-weights gives {len(args.teacher_weights)} weight(s) for {len(args.teacher)} --teacher(s) "
                 f"({', '.join(args.teacher)}); give one weight per teacher.")
    if args.teacher_weights is not None and not sum(args.teacher_weights):
        conflict(f"--teacher-weights {args.teacher_weights} are all zero; at least one teacher must count.")
    text_only = [f for f, v in (("--student-layers", args.student_layers), ("--keep-layers", args.keep_layers),
                                ("--prune-heads", args.prune_heads), ("--prune-ffn", args.prune_ffn)) if v is not None]
    if text_only and not is_text(args):
        conflict(f"{text_only[0]} makes a text student, but --data {args.data} is an image dataset; use "
                 "--student for image models, or a text dataset (--data wordnet-glosses).")
