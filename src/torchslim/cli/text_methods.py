"""`torchslim text METHOD`: one sentence-encoder method per command, its flags generated from its
options class (:mod:`torchslim.text.config`), the same that a recipe's text step is.

    torchslim text layers minilm --keep 3 --out runs/3l            # the 3 best-agreeing layers
    torchslim text prune minilm --heads 0.5 --ffn 0.5 --out runs/pruned
    torchslim text distill runs/3l --teacher minilm --epochs 2 --out runs/3l-distilled
    torchslim text quantize runs/3l-distilled --out runs/3l-int8   # ONNX Runtime dynamic INT8
    torchslim text export runs/3l-distilled --out runs/3l-onnx

SOURCE is ``minilm`` or an encoder directory (a BERT-family model, or what these commands write).
The corpus is WordNet's glosses (``--data-root``: where its files are). ``torchslim distill --data
wordnet-glosses`` makes a student and distils it in one command.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

from torchslim.cli.common import console, positive_int
from torchslim.core.errors import TorchSlimError
from torchslim.pipeline.schema import TextConfig

EPILOG = """examples:
  torchslim text layers minilm --keep 3 --out runs/3l
  torchslim text prune minilm --heads 0.5 --ffn 0.5 --out runs/pruned
  torchslim text distill runs/3l --teacher minilm --epochs 2 --out runs/3l-distilled
  torchslim text quantize runs/3l-distilled --out runs/3l-int8
  torchslim text export runs/3l-distilled --out runs/3l-onnx
"""

# method -> (options class in torchslim.text.config, help line, reads the corpus)
METHODS = {
    "layers": ("TextLayersConfig", "a student with fewer layers: the best-agreeing ones, or the given ones", True),
    "prune": ("TextPruneConfig", "remove attention heads and FFN units, the least important first", True),
    "distill": ("TextDistillConfig", "train an encoder to reproduce a teacher's embeddings", True),
    "quantize": ("TextQuantizeConfig", "ONNX export, then ONNX Runtime dynamic INT8", False),
    "export": ("TextExportConfig", "ONNX FP32 export, checked against the torch encoder", False),
}

MAX_LENGTH = TextConfig.model_fields["max_length"]  # the one default: the recipe section's


def add_parser(sub: Any) -> None:
    from torchslim.options.cli import add_options
    from torchslim.text import config as options

    group = sub.add_parser("text", help="sentence encoders: fewer layers, pruned heads, distillation, INT8, export",
                           description=__doc__.split("\n\n")[0], epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    methods = group.add_subparsers(dest="method", metavar="METHOD", parser_class=type(group))
    for name, (config, line, corpus) in METHODS.items():
        cls = getattr(options, config)
        summary = " ".join(inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].split()).replace("``", "`")
        p = methods.add_parser(name, help=line, description=summary,
                               epilog=_example(name), formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("source", metavar="SOURCE", help="minilm or an encoder directory")
        p.add_argument("--out", required=True, help="output directory")
        p.add_argument("--force", action="store_true", help="OUT holds a result: replace it")
        p.add_argument("--max-length", type=positive_int, default=MAX_LENGTH.default,
                       help=f"{MAX_LENGTH.description.rstrip('.')} ({MAX_LENGTH.default}; a recipe's text.max_length)")
        p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
        if corpus:
            p.add_argument("--data-root", default=None, help="directory holding WordNet's files")
            p.add_argument("--batch-size", type=positive_int, default=64, help="sentences per batch (64)")
            p.add_argument("--train-size", type=positive_int, default=None, help="random training subset")
            p.add_argument("--eval-size", type=positive_int, default=1000, help="held-out sentences (1000)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        add_options(p, cls, title=f"{name} options ({config}; a recipe's `{name}` step takes the same keys)")
        p.set_defaults(func=cmd_text, options=cls)


def _example(name: str) -> str:
    return "example:\n  " + next(line.strip() for line in EPILOG.splitlines() if f"text {name} " in line) + "\n"


def cmd_text(args: argparse.Namespace) -> int:
    from torchslim.options.cli import from_args

    options = from_args(args.options, args)  # refused before anything is loaded or written
    out = _claim(args)
    import torch

    from torchslim.core.io import atomic_write_json
    from torchslim.text import load_encoder

    if args.threads:
        torch.set_num_threads(args.threads)
    encoder = load_encoder(args.source, max_length=args.max_length, log=console.print)
    record = {"method": args.method, "source": args.source, "options": options.model_dump(mode="json")}
    record.update(RUN[args.method](args, options, encoder, out))
    atomic_write_json(out / "text.json", record)
    console.print(f"{args.method}: wrote {out}")
    return 0


def _claim(args: argparse.Namespace) -> Path:
    from torchslim.pipeline.preflight import check_out

    out = check_out(args.out)
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise TorchSlimError(f"--out {out} is not empty; pass --force to replace what it holds, or choose "
                             "another directory.")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _corpus(args: argparse.Namespace, encoder: Any, seed: int = 0) -> Any:
    from torchslim import data

    return data.load("wordnet-glosses", batch_size=args.batch_size, root=args.data_root,
                     tokenizer=encoder.tokenizer, train_size=args.train_size, test_size=args.eval_size, seed=seed)


def _sample(args: argparse.Namespace, encoder: Any) -> Any:
    """The validation sentences (training ones without a validation split); the options take the
    first ``sample_size``."""
    bundle = _corpus(args, encoder)
    return (bundle.val if bundle.val is not None else bundle.train).dataset.ids


def _layers(args: argparse.Namespace, options: Any, encoder: Any, out: Path) -> dict:
    from torchslim.text import save_encoder, shrink_layers

    sample = _sample(args, encoder) if options.keep is not None else None
    student, choice = shrink_layers(encoder, sample, options)
    save_encoder(student, out, {"teacher": args.source, "layers": student.teacher_layers})
    return {"layers": student.teacher_layers, "choice": choice.to_dict() if choice else None}


def _prune(args: argparse.Namespace, options: Any, encoder: Any, out: Path) -> dict:
    from torchslim.text import prune_encoder, save_encoder

    pruned, report = prune_encoder(encoder, _sample(args, encoder), options)
    save_encoder(pruned, out, {"teacher": args.source, "pruning": report})
    return {"pruning": report}


def _distill(args: argparse.Namespace, options: Any, student: Any, out: Path) -> dict:
    from torchslim.text import agreement, distill_encoder, embed, load_encoder, save_encoder

    teacher = load_encoder(options.teacher, max_length=args.max_length, log=console.print)
    bundle = _corpus(args, teacher, options.seed or 0)
    history = distill_encoder(student, teacher, bundle.train, options, cache_dir=out / "cache",
                              checkpoint_dir=out / "checkpoints", threads=args.threads, progress=not args.quiet,
                              log=console.print)
    ids, pad = bundle.test.dataset.ids, teacher.pad_token_id
    result = agreement(embed(student, ids, pad), embed(teacher, ids, pad), k=min(10, len(ids) - 1))
    save_encoder(student, out, {"teacher": options.teacher, "history": history.to_dict(), "agreement": result})
    console.print(f"held-out agreement with the teacher ({result['n']} sentences): mean cosine "
                  f"{result['mean_cosine']:.4f}, pairwise Spearman {result['pairwise_spearman']:.4f}")
    return {"agreement": result, "train_seconds": history.seconds}


def _quantize(args: argparse.Namespace, options: Any, encoder: Any, out: Path) -> dict:
    from torchslim.text import export_onnx, quantize_int8

    fp32 = export_onnx(encoder, out / "fp32.onnx")
    int8 = quantize_int8(fp32, out / "model.onnx", options)
    sizes = {"fp32": fp32.stat().st_size, "int8": int8.stat().st_size}
    fp32.unlink()  # only the INT8 model is kept
    return {"onnx": int8.name, "sizes": sizes}


def _export(args: argparse.Namespace, options: Any, encoder: Any, out: Path) -> dict:
    from torchslim.text import export_onnx

    path = export_onnx(encoder, out / "model.onnx")
    return {"onnx": path.name, "bytes": path.stat().st_size}


RUN = {"layers": _layers, "prune": _prune, "distill": _distill, "quantize": _quantize, "export": _export}
