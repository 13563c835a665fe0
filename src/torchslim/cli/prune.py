"""`torchslim prune` (channels: the model shrinks) and `torchslim sparsify` (magnitude zeros).

Both read a checkpoint directory or a shipped model name, recover on the data the model was
trained on (or ``--data``) and write a model artifact that `torchslim eval` and
``torchslim.load_model`` read: a pruned model is stored as its original architecture's recipe plus
the applied steps, replayed on load.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from torchslim.cli.common import IMPORTANCE_NAMES, conflict, console, number, positive_int, registered
from torchslim.cli.train import OPTIMIZERS, SCHEDULES, add_data_args, data_kwargs, prepare_out


def ratio_item(text: str) -> tuple[str, float]:
    """``"layer3=0.7"`` -> ``("layer3", 0.7)``."""
    path, eq, value = text.rpartition("=")
    try:
        if eq and path:
            return path, number(0, 1, low_open=True, high_open=True)(value)
    except argparse.ArgumentTypeError:
        pass
    raise argparse.ArgumentTypeError(f"expected PATH=RATIO with a ratio in (0, 1), such as layer3=0.7, got {text!r}")


def heads_item(text: str) -> tuple[str, int]:
    """``"blocks.0.attn=4"`` -> ``("blocks.0.attn", 4)``."""
    path, eq, value = text.rpartition("=")
    if eq and path and value.isdigit() and int(value) > 0:
        return path, int(value)
    raise argparse.ArgumentTypeError(f"expected PATH=HEADS with a positive head count, such as blocks.0.attn=4, "
                                     f"got {text!r}")


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE",
                   help="the model: a shipped model name or a checkpoint directory (of train, distill or prune)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--ignore", action="append", default=[], metavar="PATH",
                   help="module path (or module class name, e.g. BatchNorm2d) to leave alone; repeat")
    add_data_args(p)
    p.set_defaults(data=None)  # default: the data the model was trained on
    p.add_argument("--lr", type=number(0, low_open=True), default=None, help="peak learning rate of recovery (0.02)")
    p.add_argument("--schedule", choices=SCHEDULES, default="cosine", help="recovery schedule: cosine, onecycle or constant")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="sgd (Nesterov momentum 0.9) or adamw")
    p.add_argument("--weight-decay", type=number(0), default=5e-4, help="weight decay (5e-4)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format for training")
    p.add_argument("--seed", type=int, default=0, help="seed of random importance, data order and training")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--force", action="store_true",
                   help="OUT holds a finished or different run: discard it and start afresh")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "prune", help="remove channels: a smaller, faster dense model",
        description="Remove the least important channels of every prunable layer of SOURCE (coupled layers "
                    "together; attention heads as whole heads; the classifier's outputs kept), then recover "
                    "accuracy by distillation from the unpruned model (kd) or fine-tuning. Criteria: "
                    f"{', '.join(IMPORTANCE_NAMES)}. Writes OUT/model.safetensors + OUT/model.json "
                    "(the original recipe plus the kept channels, replayed on load) and OUT/metrics.json.",
        epilog="example:\n  torchslim prune fashion-mnist-teacher --ratio 0.5 --importance l2 --steps 3 "
               "--recover kd --epochs 6 --out runs/pruned\n  torchslim eval fashion-mnist-teacher runs/pruned",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--ratio", type=number(0, 1, low_open=True, high_open=True), default=0.5,
                   help="fraction of each layer's channels to remove, in (0, 1) (0.5)")
    p.add_argument("--importance", type=registered("importance"), default="l2",
                   help=f"criterion: {', '.join(IMPORTANCE_NAMES)} (l2)")
    p.add_argument("--steps", type=positive_int, default=1, help="prune in this many steps, recovering between")
    p.add_argument("--recover", choices=("kd", "finetune", "none"), default="kd",
                   help="recovery: distil from the unpruned model (kd), fine-tune, or none")
    p.add_argument("--epochs", type=non_negative_int, default=None,
                   help="total recovery epochs, split over the steps (1 with kd or finetune; none with --recover none)")
    p.add_argument("--global", dest="global_ranking", action="store_true",
                   help="rank channels across layers (layers prune unevenly) instead of per layer")
    p.add_argument("--ratios", action="append", type=ratio_item, default=[], metavar="PATH=RATIO",
                   help="a per-layer ratio, e.g. layer3=0.7; repeat")
    p.add_argument("--head-ratio", type=number(0, 1, high_open=True), default=None,
                   help="fraction of attention heads to remove, in [0, 1) (--ratio)")
    p.add_argument("--heads", action="append", type=heads_item, default=[], metavar="PATH=HEADS",
                   help="head count of the attention block at PATH (the module owning its q/k/v layers), "
                        "for blocks without a num_heads attribute, e.g. blocks.0.attn=4; repeat")
    p.add_argument("--round-to", type=positive_int, default=None, help="keep channel counts multiples of this")
    p.add_argument("--bn-batches", type=non_negative_int, default=50,
                   help="batches re-estimating BatchNorm statistics after each step (50)")
    p.add_argument("--cache", choices=("none", "memory", "disk"), default="memory",
                   help="kd: compute the unpruned model's logits once (disk: under OUT/cache)")
    p.add_argument("--temperature", type=number(0, low_open=True), default=4.0, help="kd temperature, > 0 (4)")
    p.set_defaults(func=cmd_prune)

    s = sub.add_parser(
        "sparsify", help="zero the smallest weights (unstructured; smaller zipped, not faster)",
        description="Zero the smallest-magnitude convolution and linear weights of SOURCE, one-shot or "
                    "gradually while training (AGP). The model stays dense: it compresses, but runs no "
                    "faster with dense kernels.",
        epilog="example:\n  torchslim sparsify fashion-mnist-teacher --sparsity 0.8 --agp --epochs 2 "
               "--out runs/sparse80",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(s)
    s.add_argument("--sparsity", type=number(0, 1, low_open=True, high_open=True), default=0.5,
                   help="fraction of weights to zero, in (0, 1) (0.5)")
    s.add_argument("--scope", choices=("global", "layer"), default="global",
                   help="rank weights across all layers (global) or per layer")
    s.add_argument("--agp", action="store_true",
                   help="raise sparsity gradually (AGP schedule) during --epochs of training, not one-shot")
    s.add_argument("--epochs", type=non_negative_int, default=0, help="training epochs with the zeros kept (0)")
    s.set_defaults(func=cmd_sparsify)


def _load(args: argparse.Namespace):
    """The model, and its data: ``--data``, else the data it was trained on (as recorded)."""
    from torchslim import data
    from torchslim.cli.evaluate import load_target

    model, meta, _ = load_target(args.source)
    recorded = meta.get("data") or {}
    if args.data is None and recorded.get("name"):
        args.data, args.data_kwargs = recorded["name"], dict(recorded.get("kwargs", {}))
        if args.data_root and args.data == "fashion-mnist":
            args.data_kwargs["root"] = args.data_root
    else:
        args.data = args.data or "fashion-mnist"
        args.data_kwargs = data_kwargs(args)
    return model, data.load(args.data, **args.data_kwargs)


def _fit_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {"optimizer": args.optimizer, "schedule": args.schedule, "weight_decay": args.weight_decay,
               "channels_last": args.channels_last}
    return {**options, **({"lr": args.lr} if args.lr is not None else {})}


def _save(model, out: Path, args: argparse.Namespace, key: str, record: Any, test: dict | None) -> None:
    from torchslim.core.checkpoint import save_model
    from torchslim.core.io import atomic_write_json

    # metrics.json first, model.json (written last by save_model) as the commit: a kill between
    # the two leaves no model record that claims a finished run.
    atomic_write_json(out / "metrics.json", {"test": test, key: record.to_dict()})
    save_model(model, out, {"data": {"name": args.data, "kwargs": args.data_kwargs}, "source": args.source,
                            key: record.to_dict(), "metrics": {"test": test},
                            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def cmd_prune(args: argparse.Namespace) -> int:
    from torchslim import prune
    from torchslim.train import evaluate

    _check_recovery(args)
    out = prepare_out(args)
    model, bundle = _load(args)
    console.print(f"pruning {args.source} ({sum(p.numel() for p in model.parameters()):,} parameters): "
                  f"ratio {args.ratio}, {args.importance}, {args.steps} step(s), recovery {args.recover} "
                  f"for {args.epochs} epoch(s) -> {out}")
    pruned, record = prune.channels(
        model, bundle.example_batch(2), args.ratio, args.importance, ratios=dict(args.ratios),
        head_ratio=args.head_ratio, heads=dict(args.heads) or None, global_ranking=args.global_ranking,
        round_to=args.round_to, ignore=args.ignore, steps=args.steps, recover=args.recover, epochs=args.epochs,
        data=bundle,
        seed=args.seed, cache=args.cache, cache_dir=out / "cache", T=args.temperature,
        bn_batches=args.bn_batches, fit_options=_fit_options(args), progress=not args.quiet, threads=args.threads)
    test = evaluate(pruned, bundle.test)
    _save(pruned, out, args, "prune", record, test)
    b, a = record.before, record.after
    console.print(f"parameters {b.parameters:,} -> {a.parameters:,} ({a.parameters / b.parameters:.2f}x), "
                  f"MACs {b.macs:,} -> {a.macs:,} ({a.macs / b.macs:.2f}x)")
    for h in record.history:
        console.print(f"step {h.step}: {h.target_ratio:.2f} of channels removed, test accuracy "
                      f"{_pct(h.accuracy_pruned)} after pruning, {_pct(h.accuracy_recovered)} after "
                      f"{h.recovery_epochs} recovery epoch(s)")
    console.print(f"test accuracy [bold]{test['accuracy']:.2f}%[/bold] (before pruning "
                  f"{_pct(record.accuracy_before)}); saved {out}/model.safetensors. Measure it: "
                  f"torchslim eval {args.source} {out}")
    return 0


def cmd_sparsify(args: argparse.Namespace) -> int:
    from torchslim import prune

    if args.agp and not args.epochs:
        conflict("--agp raises sparsity gradually while training, but --epochs is 0; give --epochs N (N > 0) "
                 "or drop --agp for one-shot sparsity.")
    out = prepare_out(args)
    model, bundle = _load(args)
    sparse, record = prune.sparsify(
        model, args.sparsity, scope=args.scope, schedule="agp" if args.agp else "oneshot", data=bundle,
        epochs=args.epochs, ignore=args.ignore, fit_options=_fit_options(args), progress=not args.quiet,
        threads=args.threads, seed=args.seed)
    _save(sparse, out, args, "sparsify", record, {"accuracy": record.accuracy_after})
    console.print(f"sparsity {record.sparsity:.1%} of the conv/linear weights ({record.sparsity_all_parameters:.1%} "
                  f"of all parameters); test accuracy {_pct(record.accuracy_before)} -> "
                  f"{_pct(record.accuracy_after)}")
    console.print(f"bytes: dense {record.dense_bytes:,}, zipped {record.zipped_bytes:,}, CSR {record.csr_bytes:,}. "
                  f"{record.note}")
    return 0


def _check_recovery(args: argparse.Namespace) -> None:
    """--recover and --epochs agree (the default epochs follow --recover)."""
    if args.recover == "none" and args.epochs:
        conflict(f"--recover none --epochs {args.epochs}: with no recovery there is no training to spend the "
                 "epochs on; drop --epochs, or choose --recover kd or finetune.")
    if args.recover != "none" and args.epochs == 0:
        conflict(f"--recover {args.recover} --epochs 0: recovery needs at least one epoch; give --epochs N or "
                 "--recover none.")
    if args.epochs is None:
        args.epochs = 0 if args.recover == "none" else 1


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}%"
