"""`torchslim quantize`: an INT8 ONNX Runtime artifact from a checkpoint, a shipped model or an .onnx.

Writes OUT/model.onnx (runs with plain onnxruntime) and OUT/model.json (the record: source,
settings, operand types chosen for this CPU and why, CPU features, accuracy of the FP32 and INT8
graphs on the whole test set).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

from torchslim.cli.common import conflict, console, err_console, positive_int, registered
from torchslim.core.errors import TorchSlimError
from torchslim.options.cli import add_options, flag, from_args
from torchslim.options.quantize import (
    DynamicInt8Config,
    Int8Config,
    QATConfig,
    QuantizeConfig,
    StaticInt8Config,
)
from torchslim.pipeline.schema import DataConfig

EXAMPLE = ("example:\n  torchslim quantize fashion-mnist-teacher --mode static --calibration-batches 8 "
           "--calibration-method minmax --out runs/int8\n  torchslim quantize runs/minilm --mode dynamic "
           "--op-types MatMul --out runs/dyn\n  torchslim eval fashion-mnist-teacher runs/int8 --thread-counts 1,2")
QAT_EXAMPLE = ("example:\n  torchslim qat fashion-mnist-student --epochs 1 --teacher source --out runs/qat\n"
               "  torchslim qat runs/pruned --epochs 2 --teacher fashion-mnist-teacher --T 2 "
               "--out runs/pruned-qat")
# The options of each --mode of `torchslim quantize`: a flag of the other mode is refused, not ignored.
MODES = {"static": StaticInt8Config, "dynamic": DynamicInt8Config}
SHARED = tuple(Int8Config.model_fields) + ("mode",)


def _outside(fields: tuple[str, ...], config: type = QuantizeConfig) -> tuple[str, ...]:
    """The fields of ``config`` not in ``fields`` (what a flag group of ``fields`` excludes)."""
    return tuple(f for f in config.model_fields if f not in fields)


def _io_flags(p: argparse.ArgumentParser, what: str) -> None:
    """SOURCE, --out, the data flags, --no-eval and --force: every INT8 command's non-method flags."""
    p.add_argument("source", metavar="SOURCE",
                   help=f"the model: a shipped model name, a checkpoint directory{what}")
    p.add_argument("--out", required=True, help="output directory (model.onnx + model.json)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="calibration and training batch size (64)")
    p.add_argument("--data", type=registered("dataset"), default=None,
                   help="dataset (default: the one the source was trained on)")
    p.add_argument("--data-root", default=None, help="directory holding the dataset files")
    p.add_argument("--no-eval", action="store_true", help="skip measuring accuracy on the test set")
    p.add_argument("--force", action="store_true",
                   help="OUT holds an artifact (finished or of other settings): discard it and quantize afresh")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "quantize", help="INT8 quantization for ONNX Runtime (static or dynamic)",
        description="Quantize SOURCE (a checkpoint directory, a shipped model name or an FP32 .onnx) to "
                    "INT8 for ONNX Runtime. static: calibrated activation ranges (QDQ, per-channel "
                    "weights); dynamic: activations quantized per batch (Linear-heavy models). Operand "
                    "types are chosen for this CPU. Quantization-aware training is `torchslim qat`.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    _io_flags(p, " or an FP32 .onnx file")
    # one group per mode, so --help says which flags each mode takes
    add_options(p, QuantizeConfig, exclude=_outside(SHARED), title="INT8 options (both modes)")
    for mode, config in MODES.items():
        add_options(p, QuantizeConfig, exclude=SHARED + _outside(tuple(config.model_fields)),
                    title=f"{mode} INT8 options (--mode {mode})")
    p.set_defaults(func=cmd_quantize, options=QuantizeConfig)

    q = sub.add_parser(
        "qat", help="quantization-aware training, then INT8 for ONNX Runtime",
        description="Fine-tune SOURCE (a checkpoint directory or a shipped model name) with fake-quantized "
                    "weights and activations on ONNX Runtime's INT8 grids, optionally distilled from a "
                    "teacher (--teacher source: the model before QAT), then write the static INT8 artifact "
                    "with the activation ranges learned in training.",
        epilog=QAT_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    _io_flags(q, "")
    q.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads for the training")
    add_options(q, QATConfig, exclude=_outside(tuple(StaticInt8Config.model_fields), QATConfig),
                title="INT8 options (the artifact)")
    add_options(q, QATConfig, exclude=tuple(StaticInt8Config.model_fields), title="training options")
    q.set_defaults(func=cmd_qat, options=QATConfig)


def _source(target: str) -> tuple[Any, dict]:
    """The model to quantize (an nn.Module or an .onnx path) and its metadata."""
    from torchslim.cli.evaluate import load_target
    from torchslim.runtime import artifact

    path = Path(target)
    onnx_path, sidecar = artifact.resolve(path)
    if path.suffix == ".onnx" or onnx_path.is_file():
        if not onnx_path.is_file():
            raise TorchSlimError(f"No ONNX file at {onnx_path}.")
        return onnx_path, artifact.read_sidecar(onnx_path, sidecar)
    model, meta, _ = load_target(target)
    return model, meta


# the dataset of a model that records none and is given no --data: the recipes' default
DEFAULT_DATASET = DataConfig.model_fields["name"].default


def source_data(args: argparse.Namespace, meta: dict) -> tuple[str, dict, dict]:
    """``(dataset, loading kwargs, kwargs as recorded)``: the source's data unless --data says otherwise."""
    from torchslim.data.registry import loader_kwargs

    source = meta.get("data") or {"name": DEFAULT_DATASET, "kwargs": {}}
    name = args.data or source["name"]
    recorded = dict(source.get("kwargs", {})) if name == source["name"] else {}
    given = {"root": ("--data-root", args.data_root)} if args.data_root else {}
    kwargs = {**recorded, **loader_kwargs(name, {"batch_size": args.batch_size}, given)}
    return name, kwargs, recorded


def data_record(name: str, recorded: dict) -> dict:
    """The dataset, recorded in the sidecar as the source recorded it, so `torchslim eval OUT` measures
    on the same data (and beside its source, in the same interleaved rounds)."""
    return {"data": {"name": name, "kwargs": recorded}}


def _check_mode(args: argparse.Namespace) -> None:
    """A flag of the other --mode is refused by name (it would be ignored), and --mode qat is pointed
    to its command."""
    mode = getattr(args, "mode", QuantizeConfig.model_fields["mode"].default)
    if mode == "qat":
        conflict("--mode qat: quantization-aware training is its own command, `torchslim qat SOURCE --out DIR` "
                 "(it trains; see `torchslim qat --help` for its flags).")
    if mode not in MODES:
        return  # from_args names the bad --mode and the valid ones
    for other, config in MODES.items():
        stray = [f for f in config.model_fields if f not in MODES[mode].model_fields and hasattr(args, f)]
        if other != mode and stray:
            conflict(f"{flag(stray[0])} applies to --mode {other}, but this is --mode {mode}; drop it or use "
                     f"--mode {other}.")


def check_artifact_out(args: argparse.Namespace) -> None:
    """--out can hold an artifact (a directory, or an .onnx path whose folder can be made), and holds
    none yet unless --force."""
    from torchslim.pipeline.preflight import check_out
    from torchslim.runtime import artifact

    out = Path(args.out)
    check_out(out.parent if out.suffix == ".onnx" else out)
    onnx_out, _ = artifact.resolve(args.out)
    if onnx_out.exists() and not args.force:
        raise TorchSlimError(f"{onnx_out} already exists; pass --force to replace it, or choose another --out.")


def _run(args: argparse.Namespace, title: str, build: Any) -> int:
    """Load SOURCE and its data, ``build(model, data kwargs, bundle, test loader, metadata)`` the
    artifact, say a slow-kernel warning on stderr, and report."""
    from torchslim import data
    from torchslim.quantize import SlowKernelWarning

    model, meta = _source(args.source)
    name, kwargs, recorded = source_data(args, meta)
    bundle = data.load(name, **{**kwargs, "augment": False})
    console.print(f"{title} {args.source} -> {args.out}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SlowKernelWarning)
        result = build(model, (name, kwargs), bundle, None if args.no_eval else bundle.test,
                       data_record(name, recorded))
    for warning in caught:
        if issubclass(warning.category, SlowKernelWarning):
            err_console.print(f"warning: {warning.message}", style="yellow", highlight=False, markup=False)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    _report(result, args)
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from torchslim.quantize import dynamic_int8, static_int8

    _check_mode(args)
    cfg = from_args(QuantizeConfig, args)
    check_artifact_out(args)

    def build(model: Any, _: tuple, bundle: Any, test: Any, metadata: dict) -> Any:
        if cfg.mode == "static":
            return static_int8(model, bundle.train, out=args.out, test_data=test, metadata=metadata,
                               config=cfg.method())
        return dynamic_int8(model, out=args.out, data=bundle.train, test_data=test, metadata=metadata,
                            config=cfg.method())

    return _run(args, f"quantizing ({cfg.mode})", build)


def cmd_qat(args: argparse.Namespace) -> int:
    from torchslim.quantize.qat_run import load_named

    cfg = from_args(QATConfig, args)
    check_artifact_out(args)
    named = cfg.teacher not in (None, "source")
    teacher = load_named(cfg.teacher, "--teacher") if named else None  # a bad name fails before any data
    label = args.source if cfg.teacher == "source" else cfg.teacher

    def build(model: Any, dataset: tuple, bundle: Any, test: Any, metadata: dict) -> Any:
        from torch import nn

        from torchslim import data
        from torchslim.quantize import run_qat

        if not isinstance(model, nn.Module):
            raise TorchSlimError("torchslim qat trains the torch model: pass a checkpoint directory or a shipped "
                                 "model, not an .onnx file.")
        name, kwargs = dataset
        train = data.load(name, **{**kwargs, "augment": True}).train  # fine-tuned as trained: augmented
        console.print(f"QAT: {cfg.epochs} epoch(s) at lr {cfg.lr:g} ({cfg.schedule})"
                      + (f", distilled from {label} ({cfg.losses_text()})" if cfg.teacher else ""))
        return run_qat(model, train, bundle.train, out=args.out, teacher_model=teacher, teacher_label=label,
                       test_data=test, metadata=metadata, threads=args.threads, config=cfg)

    return _run(args, "quantization-aware training of", build)


def _report(result: Any, args: argparse.Namespace) -> None:
    from torchslim.runtime import artifact

    info = result.info
    sizes, q = info["sizes"], info["quantization"]
    console.print(f"{info['kernel']} ({q['reason']})")
    if q.get("fp32_layers"):
        left = ", ".join(f"{n} {op}" for op, n in q["fp32_layers"].items())
        console.print(f"left in FP32 by dynamic INT8: {left} (static INT8 quantizes convolutions)")
    console.print(f"size {sizes['fp32_onnx_bytes']:,} -> {sizes['int8_onnx_bytes']:,} bytes ({sizes['ratio']:.2f}x smaller)")
    if info.get("accuracy"):
        acc = info["accuracy"]
        console.print(f"test accuracy on onnxruntime: FP32 {acc['fp32_onnx']['accuracy']:.2f}% -> INT8 "
                      f"{acc['int8']['accuracy']:.2f}% ({acc['delta_points']:+.2f} points, "
                      f"{acc['int8']['n']} samples)")
    console.print(f"wrote {result.path} and its record {artifact.resolve(args.out)[1]}")

