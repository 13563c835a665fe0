"""`torchslim distill` for text: a sentence-encoder teacher and a text corpus.

Chosen when ``--data`` is a text dataset (``wordnet-glosses``). The student is the teacher with
fewer layers (``--keep N``: the N layers that agree best, measured before training; or ``--layers
0,4,5``) or with attention heads and FFN units pruned (``--heads 0.5 --ffn 0.5``): the flags of
:class:`~torchslim.text.config.TextLayersConfig` and ``TextPruneConfig``; the training options are
:class:`~torchslim.text.config.TextDistillConfig`'s (AdamW, cosine). Losses default to
``embed-cos``; the teacher's embeddings are cached (``--cache``) unless a loss reads its
intermediate features. Writes a loadable encoder directory (Hugging Face config,
weights, tokenizer, ``torchslim.json``) and ``metrics.json`` with the held-out agreement.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from torchslim.cli.common import console, positive_int
from torchslim.core.errors import TorchSlimError
from torchslim.pipeline.schema import TextConfig

TEXT_DATASETS = ("wordnet-glosses",)

MAX_LENGTH = TextConfig.model_fields["max_length"]  # the one default: the recipe section's


def add_text_args(p: argparse.ArgumentParser) -> None:
    from torchslim.options.cli import add_options
    from torchslim.text.config import TextLayersConfig, TextPruneConfig

    g = p.add_argument_group("text (with --data wordnet-glosses; --teachers minilm or a BERT-family directory)",
                             description=_text_defaults())
    g.add_argument("--max-length", type=positive_int, default=MAX_LENGTH.default,
                   help=f"{MAX_LENGTH.description.rstrip('.')} ({MAX_LENGTH.default}; a recipe's text.max_length)")
    g.add_argument("--train-size", type=positive_int, default=None, help="random training subset (sentences)")
    g.add_argument("--eval-size", type=positive_int, default=1000, help="held-out sentences for agreement (1000)")
    add_options(p, TextLayersConfig, title="text student with fewer layers (give --keep N or --layers I,J,...)")
    # A student is made one way per run, so one --sample-size (the layers options') serves both ways.
    add_options(p, TextPruneConfig, exclude=("sample_size",),
                title="text student with attention heads and FFN units pruned (--heads, --ffn; --sample-size "
                      "sentences measure the importance)")


def _text_defaults() -> str:
    """The training defaults of a text run that differ from an image run's (from the two configs)."""
    from torchslim.distill.config import DistillConfig
    from torchslim.options.cli import default_text, flag
    from torchslim.text.config import TextDistillConfig

    image = DistillConfig.model_fields
    differ = [f"{flag(name)} {default_text(info)}" for name, info in TextDistillConfig.model_fields.items()
              if name in image and name != "losses" and default_text(info) != default_text(image[name])]
    return ("A text run trains with the defaults of TextDistillConfig where they differ: "
            f"{', '.join(differ)}; --losses embed-cos.").replace("%", "%%")


TEXT_STUDENT_OPTIONS = ("keep", "layers", "heads", "ffn", "sample_size")


def text_student_flags(args: argparse.Namespace) -> list[str]:
    """The flags of a text student that were given (``--keep``, ``--heads``, ...)."""
    from torchslim.options.cli import flag

    return [flag(name) for name in TEXT_STUDENT_OPTIONS if hasattr(args, name)]


def is_text(args: argparse.Namespace) -> bool:
    return args.data in TEXT_DATASETS


def _student_options(args: argparse.Namespace) -> Any:
    """The options of the text student the flags ask for, validated before anything is loaded."""
    from torchslim.options.cli import from_args
    from torchslim.text.config import TextLayersConfig, TextPruneConfig

    by_layers = hasattr(args, "keep") or hasattr(args, "layers")
    if by_layers == (hasattr(args, "heads") or hasattr(args, "ffn")):
        raise TorchSlimError("For a text student give exactly one of --keep N, --layers I,J,... "
                             "or --heads/--ffn.")
    return from_args(TextLayersConfig if by_layers else TextPruneConfig, args)


def _distill_options(args: argparse.Namespace) -> Any:
    """The distillation options from the fit and loss flags of ``torchslim distill``."""
    from torchslim.distill.config import DistillConfig
    from torchslim.options.cli import flag, from_args
    from torchslim.text.config import TextDistillConfig

    shared = ("teachers", "losses", "student", "width", "depth", "mix")  # read (or refused) by cmd_text_distill
    image_only = [flag(name) for name in DistillConfig.model_fields
                  if name not in TextDistillConfig.model_fields and name not in shared and hasattr(args, name)]
    if image_only:
        raise TorchSlimError(f"{image_only[0]} is an option of image distillation; a text run distils one teacher "
                             f"with the options of TextDistillConfig ({', '.join(TextDistillConfig.model_fields)}).")
    # --teacher is the command's (repeatable for image teachers); a text run takes the one given.
    fixed: dict[str, Any] = {"teacher": args.teacher[0]}
    if getattr(args, "loss", None):  # --loss NAME:K=V,... (the weight among the K=V)
        fixed["losses"] = [{"name": name, **kwargs} for name, kwargs in args.loss]
    return from_args(TextDistillConfig, args, exclude=("teacher",), **fixed)


def _student(options: Any, teacher, sample) -> tuple[Any, dict]:
    from torchslim.text import prune_encoder, shrink_layers
    from torchslim.text.config import TextLayersConfig

    if isinstance(options, TextLayersConfig):
        student, choice = shrink_layers(teacher, sample, options)
        if choice is None:
            return student, {"layers": list(options.layers or [])}
        console.print(f"layer choice ({choice.method}): keep {choice.layers}, agreement {choice.score:.4f} "
                      f"before training (every other {choice.every_other[0]}: {choice.every_other[1]:.4f})")
        return student, {"layer_choice": choice.to_dict()}
    pruned, report = prune_encoder(teacher, sample, options)
    return pruned, {"pruning": report}


def cmd_text_distill(args: argparse.Namespace) -> int:
    import torch

    from torchslim import data
    from torchslim.cli.train import prepare_out
    from torchslim.core.io import atomic_write_json
    from torchslim.text import agreement, distill_encoder, embed, load_encoder, save_encoder

    if args.student or args.width is not None or args.depth is not None:
        raise TorchSlimError("--student/--width/--depth name image models; a text student is made from the teacher with "
                             "--keep, --layers or --heads/--ffn.")
    if len(args.teacher) != 1 or args.mix:
        raise TorchSlimError("Text distillation takes one teacher (--teachers) and no --mix.")
    making, options = _student_options(args), _distill_options(args)
    args.config = options  # the run's options, as prepare_out reads them
    seed = options.seed if options.seed is not None else 0
    out = prepare_out(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    teacher = load_encoder(args.teacher[0], max_length=args.max_length, log=console.print)
    bundle = data.load(args.data, batch_size=args.batch_size, root=args.data_root, tokenizer=teacher.tokenizer,
                       train_size=args.train_size, test_size=args.eval_size, seed=seed)
    # The student options take the first sample_size sentences (validation ones when there are).
    sample = (bundle.val if bundle.val is not None else bundle.train).dataset.ids
    torch.manual_seed(seed)
    student, how = _student(making, teacher, sample)
    losses = [item.model_dump(mode="json") for item in options.losses]
    console.print(f"distilling {args.teacher[0]} ({_params(teacher):,} parameters) into a student of "
                  f"{_params(student):,} with {', '.join(i['name'] for i in losses)} for {options.epochs} "
                  f"epoch(s) on {len(bundle.train.dataset):,} sentences -> {out}")
    history = distill_encoder(student, teacher, bundle.train, options, cache_dir=out / "cache",
                              checkpoint_dir=out / "checkpoints", threads=args.threads, progress=not args.quiet,
                              log=console.print)
    ids = bundle.test.dataset.ids
    result = agreement(embed(student, ids, teacher.pad_token_id), embed(teacher, ids, teacher.pad_token_id),
                       k=min(10, len(ids) - 1))
    metrics = {"agreement": result, "train_seconds": history.seconds, "epochs": options.epochs,
               "parameters": {"teacher": _params(teacher), "student": _params(student)}, **how}
    save_encoder(student, out, {"teacher": args.teacher[0], "data": bundle.info, "losses": losses,
                                "history": history.to_dict(), "metrics": metrics,
                                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    atomic_write_json(Path(out) / "metrics.json", metrics)
    console.print(f"held-out agreement with the teacher ({result['n']} sentences): mean cosine "
                  f"[bold]{result['mean_cosine']:.4f}[/bold], 10-NN overlap {result['knn_overlap']:.3f}, "
                  f"pairwise Spearman {result['pairwise_spearman']:.4f}; saved {out}")
    return 0


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())
