"""`torchslim eval`: measure trained models (accuracy, size, MACs, latency)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from torchslim.cli.common import console, int_list
from torchslim.core.errors import TorchSlimError


EXAMPLE = """examples:
  torchslim eval fashion-mnist-teacher fashion-mnist-student   the shipped models, side by side
  torchslim eval runs/teacher runs/int8 --threads 1,2 --json   a checkpoint beside its INT8 artifact"""


def add_parser(sub: Any) -> None:
    ev = sub.add_parser(
        "eval", help="measure trained models: accuracy, size, MACs, latency",
        description="Measure one or more models on their dataset's whole test set: top-1 accuracy, "
                    "parameters, MACs, bytes on disk and latency (median with p10/p90). SOURCE is a "
                    "shipped model name (fashion-mnist-teacher, fashion-mnist-student), a checkpoint "
                    "directory written by `torchslim train`, `distill` or `prune`, or an artifact of "
                    "`torchslim quantize` (its directory or .onnx file, run by ONNX Runtime). With several "
                    "sources the first is the baseline for speed ratios; sources sharing a test set are "
                    "timed in interleaved rounds.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("sources", nargs="+", metavar="SOURCE",
                    help="shipped model name, checkpoint directory, or quantized artifact (directory or .onnx)")
    ev.add_argument("--batch-sizes", type=int_list, default=[1, 64], help="latency batch sizes (1,64)")
    ev.add_argument("--threads", type=int_list, default=[1], help="thread counts to time (1)")
    ev.add_argument("--data-root", default=None, help="directory holding the dataset files")
    ev.add_argument("--json", action="store_true", help="print the records as JSON")
    ev.set_defaults(func=cmd_eval)


def load_target(target: str):
    from torchslim import zoo
    from torchslim.core.checkpoint import load_model

    if target in zoo.ZOO:
        model, meta = zoo.load(target)
        return model, meta, zoo.path(target)
    path = Path(target)
    if not path.exists():
        raise TorchSlimError(
            f"{target!r} is neither a checkpoint directory nor a shipped model. Shipped models: "
            f"{', '.join(zoo.list())}; a checkpoint directory is what `torchslim train --out` wrote."
        )
    model, meta = load_model(path)
    return model, meta, path.parent if path.suffix == ".json" else path


def load_measurable(target: str):
    """``(model, metadata, artifact to size)``: an ONNX file or artifact directory as an ONNX Runtime
    model (its sidecar as metadata), anything else as :func:`load_target` loads it."""
    from torchslim.runtime import OnnxModel, artifact

    onnx_path, _ = artifact.resolve(target)
    if Path(target).suffix == ".onnx" or onnx_path.is_file():
        model = OnnxModel(target)
        return model, model.info, model.path
    model, meta, where = load_target(target)
    return model, meta, where / "model.safetensors"


def data_root_for(dataset: str, root: str, target: str) -> str:
    """``--data-root`` for a target's dataset, refused when that dataset reads no files (it would
    be silently ignored, and the numbers would not come from the data pointed at)."""
    import inspect

    from torchslim.data import DATASETS

    if "root" not in inspect.signature(DATASETS.get(dataset)).parameters:
        takes = [n for n in DATASETS.list() if "root" in inspect.signature(DATASETS.get(n)).parameters]
        raise TorchSlimError(f"--data-root {root}: {target} is scored on the dataset {dataset!r}, which reads no "
                             f"files (datasets read from a directory: {', '.join(takes)}); drop --data-root.")
    return root


def cmd_eval(args: argparse.Namespace) -> int:
    from torchslim import data
    from torchslim.measure import measure_many, print_records

    groups: dict[str, dict] = {}  # targets sharing a test set are timed together, interleaved
    for target in args.sources:
        model, meta, artifact = load_measurable(target)
        source = meta.get("data") or {"name": "fashion-mnist", "kwargs": {}}
        kwargs = dict(source.get("kwargs", {}))
        if args.data_root:
            kwargs["root"] = data_root_for(source["name"], args.data_root, target)
        key = json.dumps([source["name"], kwargs], sort_keys=True, default=str)
        group = groups.setdefault(key, {"data": (source["name"], kwargs), "models": {}, "artifacts": {}})
        group["models"][target] = model
        group["artifacts"][target] = artifact
    records = []
    for group in groups.values():
        name, kwargs = group["data"]
        bundle = data.load(name, **kwargs)
        records += measure_many(group["models"], bundle.test, batch_sizes=args.batch_sizes, threads=args.threads,
                                artifacts=group["artifacts"], num_classes=bundle.num_classes)
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
    else:
        print_records(records, baseline=records[0] if len(records) > 1 else None, console=console)
    return 0


