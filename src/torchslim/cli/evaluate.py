"""`torchslim eval`: measure trained models (accuracy, size, MACs, latency)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from torchslim.cli.common import console
from torchslim.core.errors import TorchSlimError
from torchslim.options.cli import add_options, from_args
from torchslim.options.measure import MeasureConfig
from torchslim.pipeline.schema import DataConfig

# Measurement options with no meaning here: each SOURCE runs on the runtime it is (a checkpoint on
# torch eager, an .onnx on ONNX Runtime), nothing is exported; only image models are measured.
NOT_HERE = {"targets": "each SOURCE is measured on the runtime it runs on; nothing is exported or quantized",
            "min_seconds": "it times the text task's sentence encoders, which `torchslim eval` does not load"}


EXAMPLE = """examples:
  torchslim eval fashion-mnist-teacher fashion-mnist-student   the shipped models, side by side
  torchslim eval runs/teacher runs/int8 --thread-counts 1,2 --json   a checkpoint beside its INT8 artifact"""


def add_parser(sub: Any) -> None:
    ev = sub.add_parser(
        "eval", help="measure trained models: accuracy, size, MACs, latency",
        description="Measure one or more models on their dataset's whole test set: top-1 accuracy, "
                    "parameters, MACs, bytes on disk and latency (median with p10/p90). SOURCE is a "
                    "shipped model name (fashion-mnist-teacher, fashion-mnist-student), a checkpoint "
                    "directory written by `torchslim train`, `distill` or `prune`, or an artifact of "
                    "`torchslim quantize` (its directory or .onnx file, run by ONNX Runtime). With several "
                    "sources the first is the baseline for speed ratios; sources sharing a test set are "
                    "timed together in interleaved rounds until every speed-up's 95% interval is within "
                    "+-5% (or --max-seconds per setting).",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("sources", nargs="+", metavar="SOURCE",
                    help="shipped model name, checkpoint directory, or quantized artifact (directory or .onnx)")
    add_options(ev, MeasureConfig, exclude=tuple(NOT_HERE), title="measurement options")
    ev.add_argument("--data-root", default=None, help="directory holding the dataset files")
    ev.add_argument("--json", action="store_true", help="print the records as JSON")
    ev.set_defaults(func=cmd_eval, options=MeasureConfig, options_exclude=NOT_HERE)


def load_target(target: str):
    from torchslim import zoo
    from torchslim.models.checkpoint import load_model

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


# the dataset of a model that records none: the recipes' default
DEFAULT_DATASET = DataConfig.model_fields["name"].default


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


def _measured(group: dict, bundle: Any, cfg: MeasureConfig, quiet: bool) -> list:
    """The group's records: accuracy, size and MACs of each, then latency timed in interleaved
    rounds against the group's first source (the measurement engine of `torchslim compare`)."""
    from torchslim.measure import first_sample, measure_many
    from torchslim.measure.rounds import attach_timing, confident_latency

    records = measure_many(group["models"], bundle.test, batch_sizes=(), artifacts=group["artifacts"],
                           num_classes=bundle.num_classes)
    run = confident_latency({rec.name: group["models"][rec.name] for rec in records}, first_sample(bundle.test),
                            baseline=records[0].name, batch_sizes=cfg.batch_sizes, threads=cfg.thread_counts,
                            min_rounds=cfg.rounds, max_seconds=cfg.max_seconds,
                            runtimes={rec.name: rec.runtime for rec in records})
    attach_timing(records, run)
    if not quiet:
        console.print(f"timing: {run.verdict}")
    return records


def cmd_eval(args: argparse.Namespace) -> int:
    from torchslim import data
    from torchslim.measure import print_records

    cfg = from_args(MeasureConfig, args, exclude=tuple(NOT_HERE))
    groups: dict[str, dict] = {}  # targets sharing a test set are timed together, interleaved
    for target in args.sources:
        model, meta, artifact = load_measurable(target)
        source = meta.get("data") or {"name": DEFAULT_DATASET, "kwargs": {}}
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
        records += _measured(group, bundle, cfg, quiet=args.json)
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2))
    else:
        print_records(records, baseline=records[0] if len(records) > 1 else None, console=console)
    return 0


