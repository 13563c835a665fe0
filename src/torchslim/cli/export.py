"""`torchslim export`: the FP32 ONNX graph of a checkpoint or a shipped model, checked against torch.

Writes OUT/model.onnx (plain onnxruntime runs it; `torchslim quantize` and `torchslim eval` take it)
and OUT/model.json (the record: the source, its data, and the export check: largest error against
the torch model, BatchNorm folded, opset).
"""

from __future__ import annotations

import argparse
from typing import Any

from torchslim.cli.common import console, positive_int, registered
from torchslim.options.cli import add_options, from_args
from torchslim.options.quantize import ExportConfig

EXAMPLE = ("example:\n  torchslim export fashion-mnist-student --out runs/student-onnx\n"
           "  torchslim export runs/pruned --opset 18 --check-batches 4 --out runs/pruned-onnx\n"
           "  torchslim eval runs/pruned runs/pruned-onnx")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export", help="FP32 ONNX export, checked against the torch model",
        description="Export SOURCE (a checkpoint directory or a shipped model name) to one self-contained "
                    "FP32 ONNX file with a dynamic batch. The graph is run by ONNX Runtime on real test "
                    "batches and compared with the torch model before anything is written.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE",
                   help="the model: a shipped model name or a checkpoint directory (of train, distill or prune)")
    p.add_argument("--out", required=True, help="output directory (model.onnx + model.json), or an .onnx path")
    p.add_argument("--batch-size", type=positive_int, default=64, help="batch size of the check batches (64)")
    p.add_argument("--data", type=registered("dataset"), default=None,
                   help="dataset of the check batches (default: the one the source was trained on)")
    p.add_argument("--data-root", default=None, help="directory holding the dataset files")
    p.add_argument("--force", action="store_true",
                   help="OUT holds an exported model: discard it and export afresh")
    add_options(p, ExportConfig, title="export options")
    p.set_defaults(func=cmd_export, options=ExportConfig)


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from torchslim import data, export
    from torchslim.cli.evaluate import load_target
    from torchslim.cli.quantize import check_artifact_out, data_record, source_data
    from torchslim.runtime import artifact

    cfg = from_args(ExportConfig, args)
    check_artifact_out(args)
    model, meta, _ = load_target(args.source)
    name, kwargs, recorded = source_data(args, meta)
    test = data.load(name, **{**kwargs, "augment": False}).test
    example = next(iter(test))[0][:8]
    onnx_path, _ = artifact.resolve(args.out)
    console.print(f"exporting {args.source} -> {onnx_path}")
    report = export.onnx(model, example, onnx_path, check_data=test, config=cfg)
    report.path = Path(report.path).name  # the sidecar lies beside it
    info = {"format": "torchslim-onnx/1", "source": args.source, "export": report.to_dict(),
            **data_record(name, recorded)}
    artifact.write(args.out, onnx_path.read_bytes(), info)
    console.print(f"opset {report.opset}, {report.bytes:,} bytes, {report.batchnorm_folded} BatchNorm folded; "
                  f"max |onnx - torch| {report.max_abs_error:.3g} over {sum(report.checked_batches)} samples")
    if report.batchnorm_kept:
        console.print(f"note: {report.batchnorm_kept} BatchNorm layer(s) follow no convolution and stay in the graph")
    console.print(f"wrote {onnx_path} and its record {artifact.resolve(args.out)[1]}")
    return 0
