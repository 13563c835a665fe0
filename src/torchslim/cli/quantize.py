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

from torchslim.cli.common import conflict, console, err_console, number, positive_int, registered
from torchslim.core.errors import TorchSlimError

EXAMPLE = ("example:\n  torchslim quantize fashion-mnist-teacher --mode static --calibration-batches 8 "
           "--calibration minmax --out runs/int8\n  torchslim quantize fashion-mnist-student --mode qat "
           "--epochs 1 --teacher source --out runs/qat\n  torchslim eval fashion-mnist-teacher runs/int8 --threads 1,2")


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "quantize", help="INT8 quantization for ONNX Runtime (static, dynamic, QAT)",
        description="Quantize SOURCE (a checkpoint directory, a shipped model name or an FP32 .onnx) to "
                    "INT8 for ONNX Runtime. static: calibrated activation ranges (QDQ, per-channel "
                    "weights); dynamic: activations quantized per batch (Linear-heavy models); qat: "
                    "fake-quantized fine-tuning (optionally distilled from a teacher), then the static "
                    "artifact with the learned ranges. Operand types are chosen for this CPU.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE",
                   help="the model: a shipped model name, a checkpoint directory or an FP32 .onnx file")
    p.add_argument("--mode", choices=("static", "dynamic", "qat"), default="static", help="quantization mode")
    p.add_argument("--out", required=True, help="output directory (model.onnx + model.json)")
    p.add_argument("--calibration-batches", type=positive_int, default=None, help="calibration batches (8)")
    p.add_argument("--calibration", choices=("minmax", "entropy", "percentile"), default=None,
                   help="calibration method for activation ranges (minmax)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="calibration and QAT batch size (64)")
    p.add_argument("--operands", choices=("auto", "u8s8", "s8s8"), default="auto",
                   help="INT8 operand types; auto picks what this CPU runs fast")
    p.add_argument("--keep-fp32", type=_names, default=[], metavar="NAMES",
                   help="comma-separated module paths or ONNX node names to keep in FP32, e.g. fc,stem")
    p.add_argument("--data", type=registered("dataset"), default=None,
                   help="dataset (default: the one the source was trained on)")
    p.add_argument("--data-root", default=None, help="directory holding the dataset files")
    p.add_argument("--epochs", type=positive_int, default=None, help="QAT epochs (1)")
    p.add_argument("--lr", type=number(0, low_open=True), default=None,
                   help="QAT peak learning rate (0.01, cosine schedule)")
    p.add_argument("--teacher", default=None,
                   help="QAT with distillation: 'source' (the FP32 model) or a checkpoint / shipped name")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads for QAT")
    p.add_argument("--no-eval", action="store_true", help="skip measuring accuracy on the test set")
    p.add_argument("--force", action="store_true",
                   help="OUT holds an artifact (finished or of other settings): discard it and quantize afresh")
    p.set_defaults(func=cmd_quantize)


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


def _data(args: argparse.Namespace, meta: dict) -> tuple[str, dict, dict]:
    """``(dataset, loading kwargs, kwargs as recorded)``: the source's data unless --data says otherwise."""
    source = meta.get("data") or {"name": "fashion-mnist", "kwargs": {}}
    name = args.data or source["name"]
    recorded = dict(source.get("kwargs", {})) if name == source["name"] else {}
    kwargs = {**recorded, "batch_size": args.batch_size}
    if args.data_root and name == "fashion-mnist":
        kwargs["root"] = args.data_root
    return name, kwargs, recorded


def _data_record(name: str, recorded: dict) -> dict:
    """The dataset, recorded in the sidecar as the source recorded it, so `torchslim eval OUT` measures
    on the same data (and beside its source, in the same interleaved rounds)."""
    return {"data": {"name": name, "kwargs": recorded}}


def _qat(model: Any, args: argparse.Namespace, name: str, kwargs: dict, recorded: dict, calib: Any,
         test: Any) -> Any:
    from torch import nn

    from torchslim import data
    from torchslim.cli.evaluate import load_target
    from torchslim.distill import DistillTask
    from torchslim.distill import losses as L
    from torchslim.quantize import prepare_qat, qat_int8
    from torchslim.train import fit

    if not isinstance(model, nn.Module):
        raise TorchSlimError("--mode qat trains the torch model: pass a checkpoint directory or a shipped model, "
                             "not an .onnx file.")
    train = data.load(name, **{**kwargs, "augment": True}).train  # fine-tuned as trained: augmented
    qmodel = prepare_qat(model, calib, batches=args.calibration_batches, operand_types=args.operands,
                         keep_fp32=args.keep_fp32)
    trainee, teacher_name = qmodel, None
    if args.teacher:
        teacher = model if args.teacher == "source" else load_target(args.teacher)[0]
        teacher_name = args.source if args.teacher == "source" else args.teacher
        trainee = DistillTask(qmodel, teacher, [(L.create("kd", T=4), 0.9), (L.create("ce"), 0.1)])
    console.print(f"QAT: {args.epochs} epoch(s) at lr {args.lr} (cosine)"
                  + (f", distilled from {teacher_name} (0.9 KD T=4 + 0.1 CE)" if teacher_name else ""))
    history = fit(trainee, train, args.epochs, test=None, lr=args.lr, schedule="cosine", threads=args.threads,
                  progress=True)
    training = {"epochs": args.epochs, "lr": args.lr, "schedule": "cosine", "teacher": teacher_name,
                "losses": "0.9 kd(T=4) + 0.1 ce" if teacher_name else "ce", "seconds": history.seconds}
    return qat_int8(qmodel, calib, out=args.out, batches=args.calibration_batches, method=args.calibration,
                    test_data=test, training=training, metadata=_data_record(name, recorded))


def cmd_quantize(args: argparse.Namespace) -> int:
    from torchslim import data
    from torchslim.quantize import SlowKernelWarning
    from torchslim.runtime import artifact

    _check_flags(args)
    onnx_out, _ = artifact.resolve(args.out)
    if onnx_out.exists() and not args.force:
        raise TorchSlimError(f"{onnx_out} already exists; pass --force to replace it, or choose another --out.")
    model, meta = _source(args.source)
    name, kwargs, recorded = _data(args, meta)
    bundle = data.load(name, **{**kwargs, "augment": False})
    console.print(f"quantizing {args.source} ({args.mode}) -> {args.out}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SlowKernelWarning)
        result = _quantize(model, args, name, kwargs, recorded, bundle)
    for warning in caught:
        if issubclass(warning.category, SlowKernelWarning):
            err_console.print(f"warning: {warning.message}", style="yellow", highlight=False, markup=False)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    _report(result, args)
    return 0


def _check_flags(args: argparse.Namespace) -> None:
    """Flags the chosen --mode would silently ignore are refused; then their defaults; --out checked."""
    from torchslim.pipeline.preflight import check_out

    if args.mode != "qat":
        given = [f for f, v in (("--epochs", args.epochs), ("--lr", args.lr), ("--teacher", args.teacher),
                                ("--threads", args.threads)) if v is not None]
        if given:
            conflict(f"{given[0]} applies to --mode qat (training), but --mode is {args.mode}; drop {given[0]} or "
                     "use --mode qat.")
    if args.mode == "dynamic":
        given = [f for f, v in (("--calibration-batches", args.calibration_batches),
                                ("--calibration", args.calibration)) if v is not None]
        if given:
            conflict(f"{given[0]} sets static calibration, but --mode dynamic quantizes activations per batch "
                     "without calibrating; drop it or use --mode static.")
    args.epochs, args.lr = args.epochs or 1, args.lr or 0.01
    args.calibration_batches, args.calibration = args.calibration_batches or 8, args.calibration or "minmax"
    out = Path(args.out)
    check_out(out.parent if out.suffix == ".onnx" else out)


def _quantize(model: Any, args: argparse.Namespace, name: str, kwargs: dict, recorded: dict, bundle: Any) -> Any:
    from torchslim.quantize import dynamic_int8, static_int8

    test = None if args.no_eval else bundle.test
    if args.mode == "static":
        return static_int8(model, bundle.train, out=args.out, batches=args.calibration_batches,
                           method=args.calibration, operand_types=args.operands, keep_fp32=args.keep_fp32,
                           test_data=test, metadata=_data_record(name, recorded))
    if args.mode == "dynamic":
        return dynamic_int8(model, out=args.out, data=bundle.train, keep_fp32=args.keep_fp32, test_data=test,
                            metadata=_data_record(name, recorded))
    return _qat(model, args, name, kwargs, recorded, bundle.train, test)


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

