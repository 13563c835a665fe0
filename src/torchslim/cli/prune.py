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

from torchslim.cli.common import IMPORTANCE_NAMES, console, positive_int
from torchslim.cli.train import add_data_args, data_kwargs
from torchslim.core.errors import TorchSlimError
from torchslim.options.cli import add_options, from_args
from torchslim.pipeline.schema import DataConfig
from torchslim.prune.config import PruneConfig, SparsifyConfig


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE",
                   help="the model: a shipped model name or a checkpoint directory (of train, distill or prune)")
    p.add_argument("--out", required=True, help="output directory")
    add_data_args(p)
    p.set_defaults(data=None)  # default: the data the model was trained on
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
        epilog="example:\n  torchslim prune fashion-mnist-teacher --ratio 0.5 --importance l2 --iterations 3 "
               "--recover kd --epochs 6 --out runs/pruned\n  torchslim eval fashion-mnist-teacher runs/pruned",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    add_options(p, PruneConfig, title="pruning and recovery options")
    p.set_defaults(func=cmd_prune, options=PruneConfig)

    s = sub.add_parser(
        "sparsify", help="zero the smallest weights (unstructured; smaller zipped, not faster)",
        description="Zero the smallest-magnitude convolution and linear weights of SOURCE, one-shot or "
                    "gradually while training (AGP). The model stays dense: it compresses, but runs no "
                    "faster with dense kernels.",
        epilog="example:\n  torchslim sparsify fashion-mnist-teacher --sparsity 0.8 --ramp agp --epochs 2 "
               "--out runs/sparse80",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(s)
    add_options(s, SparsifyConfig, title="sparsity and training options")
    s.set_defaults(func=cmd_sparsify, options=SparsifyConfig)


# the dataset of a model that records none and is given no --data: the recipes' default
DEFAULT_DATASET = DataConfig.model_fields["name"].default


def _load(args: argparse.Namespace):
    """The model, and its data: ``--data``, else the data it was trained on (as recorded)."""
    from torchslim import data
    from torchslim.cli.evaluate import load_target

    model, meta, _ = load_target(args.source)
    recorded = meta.get("data") or {}
    if args.data is None and recorded.get("name"):
        from torchslim.data.registry import loader_kwargs

        args.data = recorded["name"]
        given = {"root": ("--data-root", args.data_root)} if args.data_root else {}
        args.data_kwargs = {**recorded.get("kwargs", {}), **loader_kwargs(args.data, {}, given)}
    else:
        args.data = args.data or DEFAULT_DATASET
        args.data_kwargs = data_kwargs(args)
    return model, data.load(args.data, **args.data_kwargs)


def _prepare_out(args: argparse.Namespace, what: str) -> Path:
    """The output directory, refusing to replace a finished run unless --force."""
    from torchslim.pipeline.preflight import check_out

    out = check_out(args.out)
    if (out / "model.json").exists() and not args.force:
        raise TorchSlimError(f"{out} already holds a {what} model; pass --force to replace it, or choose another "
                             "--out.")
    return out


def _save(model, out: Path, args: argparse.Namespace, key: str, record: Any, test: dict | None) -> None:
    from torchslim.core.io import atomic_write_json
    from torchslim.models.checkpoint import save_model

    # metrics.json first, model.json (written last by save_model) as the commit: a kill between
    # the two leaves no model record that claims a finished run.
    atomic_write_json(out / "metrics.json", {"test": test, key: record.to_dict()})
    save_model(model, out, {"data": {"name": args.data, "kwargs": args.data_kwargs}, "source": args.source,
                            key: record.to_dict(), "metrics": {"test": test},
                            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def cmd_prune(args: argparse.Namespace) -> int:
    from torchslim import prune
    from torchslim.train import evaluate

    cfg = from_args(PruneConfig, args)
    out = _prepare_out(args, "pruned")
    model, bundle = _load(args)
    console.print(f"pruning {args.source} ({sum(p.numel() for p in model.parameters()):,} parameters): "
                  f"ratio {cfg.ratio}, {cfg.importance}, {cfg.iterations} iteration(s), recovery {cfg.recover} "
                  f"for {cfg.epochs} epoch(s) -> {out}")
    pruned, record = prune.channels(model, bundle.example_batch(2), config=cfg, data=bundle, seed=args.seed,
                                    cache_dir=out / "cache", progress=not args.quiet, threads=args.threads)
    test = evaluate(pruned, bundle.test)
    _save(pruned, out, args, "prune", record, test)
    b, a = record.before, record.after
    console.print(f"parameters {b.parameters:,} -> {a.parameters:,} ({a.parameters / b.parameters:.2f}x), "
                  f"MACs {b.macs:,} -> {a.macs:,} ({a.macs / b.macs:.2f}x)")
    for h in record.history:
        console.print(f"iteration {h.step}: {h.target_ratio:.2f} of channels removed, test accuracy "
                      f"{_pct(h.accuracy_pruned)} after pruning, {_pct(h.accuracy_recovered)} after "
                      f"{h.recovery_epochs} recovery epoch(s)")
    console.print(f"test accuracy [bold]{test['accuracy']:.2f}%[/bold] (before pruning "
                  f"{_pct(record.accuracy_before)}); saved {out}/model.safetensors. Measure it: "
                  f"torchslim eval {args.source} {out}")
    return 0


def cmd_sparsify(args: argparse.Namespace) -> int:
    from torchslim import prune

    cfg = from_args(SparsifyConfig, args)
    out = _prepare_out(args, "sparsified")
    model, bundle = _load(args)
    sparse, record = prune.sparsify(model, config=cfg, data=bundle, progress=not args.quiet, threads=args.threads,
                                    seed=args.seed)
    _save(sparse, out, args, "sparsify", record, {"accuracy": record.accuracy_after})
    console.print(f"sparsity {record.sparsity:.1%} of the conv/linear weights ({record.sparsity_all_parameters:.1%} "
                  f"of all parameters); test accuracy {_pct(record.accuracy_before)} -> "
                  f"{_pct(record.accuracy_after)}")
    console.print(f"bytes: dense {record.dense_bytes:,}, zipped {record.zipped_bytes:,}, CSR {record.csr_bytes:,}. "
                  f"{record.note}")
    return 0


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}%"
