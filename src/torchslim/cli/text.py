"""`torchslim distill` for text: a sentence-encoder teacher and a text corpus.

Chosen when ``--data`` is a text dataset (``wordnet-glosses``). The student is the teacher with
fewer layers (``--student-layers N``: the N layers that agree best, measured before training; or
``--keep-layers 0,4,5``) or with attention heads and FFN units pruned (``--prune-heads 0.5
--prune-ffn 0.5``). Losses default to ``embed-cos``; the teacher's embeddings are cached unless a
loss reads its intermediate features. Writes a loadable encoder directory (Hugging Face config,
weights, tokenizer, ``torchslim.json``) and ``metrics.json`` with the held-out agreement.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from torchslim.cli.common import console, number, positive_int
from torchslim.core.errors import TorchSlimError

TEXT_DATASETS = ("wordnet-glosses",)


def add_text_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("text (with --data wordnet-glosses; --teacher minilm or a BERT-family directory)")
    g.add_argument("--student-layers", type=positive_int, default=None,
                   help="student = the teacher with this many layers, the best-agreeing ones (measured)")
    g.add_argument("--keep-layers", type=int_list_zero, default=None, help="student = these teacher layers, e.g. 0,4,5")
    g.add_argument("--prune-heads", type=number(0, 1, high_open=True), default=None,
                   help="student = teacher with this fraction of heads cut, in [0, 1)")
    g.add_argument("--prune-ffn", type=number(0, 1, high_open=True), default=None,
                   help="... and this fraction of FFN units cut, in [0, 1)")
    g.add_argument("--max-length", type=positive_int, default=64, help="tokens per sentence (64)")
    g.add_argument("--train-size", type=positive_int, default=None, help="random training subset (sentences)")
    g.add_argument("--eval-size", type=positive_int, default=1000, help="held-out sentences for agreement (1000)")
    g.add_argument("--sample-size", type=positive_int, default=256,
                   help="validation sentences for the layer choice and head importance (256)")


def int_list_zero(text: str) -> list[int]:
    """Comma-separated layer indices (>= 0, at least one, none twice)."""
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 0 or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"expected comma-separated distinct layer indices >= 0, e.g. 0,4,5; "
                                         f"got {text!r}")
    return values


def is_text(args: argparse.Namespace) -> bool:
    return args.data in TEXT_DATASETS


def _student(args: argparse.Namespace, teacher, sample) -> tuple[Any, dict]:
    from torchslim.text import choose_layers, layer_student, prune_encoder

    modes = [m for m in ("student_layers", "keep_layers") if getattr(args, m) is not None]
    pruning = args.prune_heads is not None or args.prune_ffn is not None
    if len(modes) + pruning != 1:
        raise TorchSlimError("For a text student give exactly one of --student-layers N, --keep-layers I,J,... "
                             "or --prune-heads/--prune-ffn.")
    if args.student_layers is not None:
        choice = choose_layers(teacher, sample, args.student_layers)
        console.print(f"layer choice ({choice.method}): keep {choice.layers}, agreement {choice.score:.4f} "
                      f"before training (every other {choice.every_other[0]}: {choice.every_other[1]:.4f})")
        return layer_student(teacher, choice.layers), {"layer_choice": choice.to_dict()}
    if args.keep_layers is not None:
        return layer_student(teacher, args.keep_layers), {"layers": args.keep_layers}
    pruned, report = prune_encoder(teacher, sample, heads=args.prune_heads or 0.0, ffn=args.prune_ffn or 0.0)
    return pruned, {"pruning": report}


def cmd_text_distill(args: argparse.Namespace) -> int:
    import torch

    from torchslim import data
    from torchslim.cli.train import prepare_out
    from torchslim.core.io import atomic_write_json
    from torchslim.text import agreement, distill_encoder, embed, load_encoder, save_encoder
    from torchslim.text.distill import FIT

    if args.student or args.width is not None:
        raise TorchSlimError("--student/--width name image models; a text student is made from the teacher with "
                             "--student-layers, --keep-layers or --prune-heads/--prune-ffn.")
    if len(args.teacher) != 1 or args.mix:
        raise TorchSlimError("Text distillation takes one --teacher and no --mix.")
    specs = [(name, {k: v for k, v in kw.items() if k != "weight"}, float(kw.get("weight", 1.0)))
             for name, kw in (args.loss or [("embed-cos", {})])]
    out = prepare_out(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    teacher = load_encoder(args.teacher[0], max_length=args.max_length, log=console.print)
    bundle = data.load(args.data, batch_size=args.batch_size, root=args.data_root, tokenizer=teacher.tokenizer,
                       train_size=args.train_size, test_size=args.eval_size, seed=args.seed)
    sample = bundle.val.dataset.ids[: args.sample_size] if bundle.val is not None else bundle.train.dataset.ids[:256]
    torch.manual_seed(args.seed)
    student, how = _student(args, teacher, sample)
    console.print(f"distilling {args.teacher[0]} ({_params(teacher):,} parameters) into a student of "
                  f"{_params(student):,} with {', '.join(n for n, _, _ in specs)} for {args.epochs} epoch(s) "
                  f"on {len(bundle.train.dataset):,} sentences -> {out}")
    overrides = {k: v for k, v in (("optimizer", args.optimizer), ("lr", args.lr), ("schedule", args.schedule),
                                   ("weight_decay", args.weight_decay)) if v is not None}
    cache = None if args.cache == "none" else args.cache
    history = distill_encoder(student, teacher, bundle.train, epochs=args.epochs, losses=specs, cache=cache,
                              cache_dir=out / "cache", checkpoint_dir=out / "checkpoints", threads=args.threads,
                              progress=not args.quiet, log=console.print, seed=args.seed,
                              **{**FIT, **overrides, "warmup_epochs": args.warmup_epochs or FIT["warmup_epochs"]})
    ids = bundle.test.dataset.ids
    result = agreement(embed(student, ids, teacher.pad_token_id), embed(teacher, ids, teacher.pad_token_id),
                       k=min(10, len(ids) - 1))
    metrics = {"agreement": result, "train_seconds": history.seconds, "epochs": args.epochs,
               "parameters": {"teacher": _params(teacher), "student": _params(student)}, **how}
    save_encoder(student, out, {"teacher": args.teacher[0], "data": bundle.info, "losses": specs,
                                "history": history.to_dict(), "metrics": metrics,
                                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    atomic_write_json(Path(out) / "metrics.json", metrics)
    console.print(f"held-out agreement with the teacher ({result['n']} sentences): mean cosine "
                  f"[bold]{result['mean_cosine']:.4f}[/bold], 10-NN overlap {result['knn_overlap']:.3f}, "
                  f"pairwise Spearman {result['pairwise_spearman']:.4f}; saved {out}")
    return 0


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())
