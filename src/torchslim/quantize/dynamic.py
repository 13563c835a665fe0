"""Post-training dynamic INT8 on ONNX Runtime, for Linear-heavy models (MLPs, transformers).

Weights are quantized ahead of time (int8, per output channel by default: per-tensor int8 was
seen to be badly inaccurate on attention projections); activations are quantized on the fly per
batch (``DynamicQuantizeLinear``: uint8, range of the batch), so no calibration data is needed.
Linear layers exported as ``Gemm`` are first rewritten to ``MatMul`` + ``Add``, which ONNX
Runtime's dynamic quantizer handles (``MatMulInteger``); convolutions become ``ConvInteger``.
Activations are always uint8 here (that is what ``DynamicQuantizeLinear`` produces), so the
operands are U8S8 on every CPU; weights drop to 7 bits on x86 without VNNI (see ``operands``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, get_args

import onnx
import torch

from torchslim.export.locate import quiet
from torchslim.options.quantize import DynamicInt8Config, DynamicOp, configured
from torchslim.quantize import operands, select, sidecar
from torchslim.quantize.rewrite import gemm_to_matmul
from torchslim.quantize.source import prepare
from torchslim.quantize.static import QuantizeError, check_out, output_dir, preprocess
from torchslim.runtime import OnnxModel, artifact
from torchslim.runtime.graph import kernel_of, read_model

DEFAULT_OPS = get_args(DynamicOp)  # every op type dynamic INT8 can quantize (MatMul alone by default)


def _layer_counts(graph: onnx.ModelProto) -> dict[str, dict[str, int]]:
    """How many layers run in INT8 (by integer op) and how many stayed FP32 (by op), for the record."""
    counts: dict[str, dict[str, int]] = {"int8": {}, "fp32": {}}
    for node in graph.graph.node:
        kind = ("int8" if node.op_type in ("MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul") else
                "fp32" if node.op_type in ("MatMul", "Conv", "Gemm") else None)
        if kind:
            counts[kind][node.op_type] = counts[kind].get(node.op_type, 0) + 1
    return counts


def dynamic_int8(
    model: Any,
    *,
    out: str | Path | None = None,
    example_input: torch.Tensor | None = None,
    data: Iterable | None = None,
    test_data: Iterable | None = None,
    metadata: dict[str, Any] | None = None,
    config: DynamicInt8Config | None = None,
    **options: Any,
) -> OnnxModel:
    """Quantize ``model``'s weights to INT8 with activations quantized per batch at run time.

    Args:
        model: an ``nn.Module`` (exported first), an ``.onnx`` file, an artifact or checkpoint
            directory, or a ``torchslim.runtime`` model. FP32 only.
        out: the artifact directory or ``.onnx`` path; None: a new temporary directory.
        example_input: the export's example batch (a torch model needs it or ``data``).
        data: real batches to check the export on (a torch model needs it or ``example_input``).
        test_data: a loader; the FP32 and INT8 accuracy over all of it is recorded.
        metadata: JSON-serialisable entries added to the sidecar.
        config: the options (:class:`~torchslim.options.DynamicInt8Config`: op_types, keep_fp32,
            per_channel, preprocess_graph). ``op_types`` is ``["MatMul"]`` (every Linear) by
            default; "Conv" gives ``ConvInteger`` (often slower than FP32 on CPU).
        **options: any :class:`~torchslim.options.DynamicInt8Config` field, laid over ``config``.

    Raises:
        OptionsError: a bad or unknown option (named, with what is valid).
        TorchSlimError: a keep_fp32 name that is not in the graph, an ``out`` where a file stands
            in the way; ExportError, CorruptFileError, QuantizeError as for
            :func:`~torchslim.quantize.static_int8`.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    began = time.perf_counter()
    cfg = configured(DynamicInt8Config, "quantize.dynamic_int8", config, options)
    op_types, keep_fp32, per_channel = cfg.op_types, cfg.keep_fp32, cfg.per_channel
    check_out(out)
    ops = operands.choose("u8s8")
    with tempfile.TemporaryDirectory(prefix="torchslim-quantize-") as tmp:
        workdir = Path(tmp)
        src = prepare(model, workdir, example_input, data)
        keep = select.resolve(src.graph, keep_fp32, "keep_fp32") if keep_fp32 else {}
        excluded = sorted({node for nodes in keep.values() for node in nodes})
        prepared = read_model(preprocess(src, workdir, cfg.preprocess_graph))
        rewritten = gemm_to_matmul(prepared)
        rewritten_path = workdir / "fp32-matmul.onnx"
        onnx.save(prepared, str(rewritten_path))
        int8_path = workdir / "int8.onnx"
        try:
            with quiet():
                quantize_dynamic(str(rewritten_path), str(int8_path), op_types_to_quantize=list(op_types),
                                 per_channel=per_channel, reduce_range=ops.reduce_range,
                                 weight_type=QuantType.QInt8, nodes_to_exclude=excluded)
        except (ValueError, RuntimeError, KeyError, IndexError) as exc:
            raise QuantizeError(f"ONNX Runtime's quantize_dynamic failed ({type(exc).__name__}: "
                                f"{str(exc)[:300]}).") from exc
        int8_graph = read_model(int8_path)
        kernel = kernel_of(int8_graph)
        if not kernel.startswith("INT8"):
            raise QuantizeError(f"Dynamic INT8 found nothing to quantize: the graph has no {', '.join(op_types)} "
                                "node outside keep_fp32. Static INT8 (static_int8) quantizes convolutions.")
        layers = _layer_counts(int8_graph)
        quantization = {"format": "dynamic (IntegerOps)", "per_channel": per_channel, **ops.to_dict(),
                        "int8_layers": layers["int8"], "fp32_layers": layers["fp32"],
                        "op_types": list(op_types), "gemm_rewritten_to_matmul": rewritten,
                        "preprocess": cfg.preprocess_graph, "calibration": None,
                        "keep_fp32": {"requested": list(keep_fp32), "nodes": excluded}}
        info = sidecar.build(
            "dynamic", source=src.info, quantization=quantization, kernel=kernel,
            fp32_bytes=src.path.stat().st_size, int8_bytes=int8_path.stat().st_size,
            seconds=time.perf_counter() - began,
            accuracy=sidecar.accuracy(src.path, int8_path, test_data) if test_data is not None else None,
            extra=metadata)
        out = output_dir(out, "dynamic")
        artifact.write(out, int8_path.read_bytes(), info)
        return OnnxModel(out)
