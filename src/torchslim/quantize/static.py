"""Post-training static INT8 on ONNX Runtime: QDQ format, per-channel weights, calibrated ranges.

The route: the FP32 graph (exported and checked, or given) -> ONNX Runtime's pre-processing
(``quant_pre_process``: symbolic shape inference and graph optimisation, so the quantizer sees
fused, fully shaped nodes) -> ``quantize_static`` with activation ranges calibrated on the first N
batches of a loader (MinMax, entropy or percentile), weights per channel, Q/DQ pairs around every
quantizable node except those kept in FP32 -> one ``.onnx`` plus its JSON sidecar. ONNX Runtime
fuses each DQ -> op -> Q group into an integer kernel (QLinearConv, QGemm, QLinearAdd, ...) when
the session is created.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from torchslim.core.errors import TorchSlimError
from torchslim.export.locate import quiet
from torchslim.options.quantize import StaticInt8Config, configured
from torchslim.quantize import calibration as calib
from torchslim.quantize import operands, ranges, select, sidecar, source
from torchslim.quantize.source import Source
from torchslim.runtime import OnnxModel, artifact
from torchslim.runtime.graph import kernel_of, read_model


class QuantizeError(TorchSlimError):
    """ONNX Runtime's quantizer could not quantize the graph."""


def output_dir(out: str | Path | None, mode: str) -> Path:
    """``out``, or a fresh temporary directory when None (kept: the artifact lives there)."""
    return Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"torchslim-int8-{mode}-"))


def check_out(out: str | Path | None) -> None:
    """Refuse, before any work, an ``out`` that cannot hold the artifact (a file where a directory goes)."""
    if out is None:
        return
    onnx_path, _ = artifact.resolve(out)
    if onnx_path.is_dir():
        raise TorchSlimError(f"out={str(out)!r}: {onnx_path} is a directory; an .onnx path must name a file.")
    if Path(out).suffix != ".onnx" and Path(out).is_file():
        raise TorchSlimError(f"out={str(out)!r} is a file, not a directory: give a directory (model.onnx and "
                             "model.json are written inside) or an .onnx path.")
    existing = onnx_path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise TorchSlimError(f"out={str(out)!r} cannot be created: {existing} is a file, not a directory.")


def preprocess(src: Source, workdir: Path, enabled: bool) -> Path:
    """ONNX Runtime's quantization pre-processing of ``src`` (or ``src.path`` when disabled)."""
    if not enabled:
        return src.path
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target = workdir / "fp32-preprocessed.onnx"
    try:
        with quiet():
            quant_pre_process(str(src.path), str(target), skip_optimization=False, skip_onnx_shape=False,
                              skip_symbolic_shape=False)
    except Exception as exc:  # ORT raises assorted types from shape inference and optimisation
        raise QuantizeError(f"ONNX Runtime's quantization pre-processing failed ({type(exc).__name__}: "
                            f"{str(exc)[:300]}); pass preprocess_graph=False to quantize without it.") from exc
    return target


def overrides(fixed: dict[str, tuple[float, float]], prepared: Path) -> dict[str, list[dict]]:
    """ONNX Runtime's ``TensorQuantOverrides`` for the ``fixed`` ranges, each tensor checked to exist."""
    graph = onnx.load(str(prepared), load_external_data=False).graph
    tensors = {name for node in graph.node for name in node.input} | {i.name for i in graph.input}
    lost = sorted(set(fixed) - tensors)
    if lost:
        raise QuantizeError(f"Tensors {', '.join(lost[:5])} with fixed ranges are not in the graph after "
                            "pre-processing; quantize with preprocess_graph=False.")
    return {t: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for t, (lo, hi) in fixed.items()}


def source_and_calibration(model: Any, workdir: Path, data: Iterable | None, batches: int,
                           example_input: torch.Tensor | None) -> tuple[Source, ranges.Stream]:
    """The FP32 graph and the calibration batches, every batch checked against the model first
    (the batches are read again while calibrating, never all held)."""
    target = source.resolve(model)
    if isinstance(target, OnnxModel):
        src = source.from_onnx(target.path, workdir, {"record": target.info} if target.info else None)
        return src, ranges.Stream(data, batches, *src.input).survey()
    shape = ["N", *example_input.shape[1:]] if example_input is not None else None
    stream = ranges.Stream(data, batches, "input", shape).survey()
    example = example_input if example_input is not None else torch.from_numpy(stream.head)
    return source.from_module(target, workdir, example, data), stream


def calibration_options(prepared: Path, stream: ranges.Stream,
                        config: StaticInt8Config) -> tuple[int, dict[str, Any]]:
    """Samples per calibration run for ``prepared`` and the calibrator's ``extra_options``."""
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(prepared), load_external_data=False))
    per_run = ranges.samples_per_run(graph, tuple(stream.head.shape[1:]))
    options: dict[str, Any] = {}
    if config.calibration_method != "minmax":  # histograms are folded run by run, not every activation held
        options["CalibStridedMinMax"] = 1
    if config.calibration_method == "percentile":
        options["CalibPercentile"] = config.percentile
    return per_run, options


def quantize_graph(src: Source, stream: ranges.Stream, workdir: Path, out: Path, *, mode: str,
                   config: StaticInt8Config, ops: operands.Operands, test_data: Iterable | None, began: float,
                   fixed_ranges: dict[str, tuple[float, float]] | None = None,
                   extra: dict[str, Any] | None = None) -> OnnxModel:
    """Calibrate and quantize ``src`` into the artifact ``out`` (shared by static INT8 and QAT).

    ``fixed_ranges`` (``{tensor: (lo, hi)}``, QAT's learned ranges) replace the calibrated ranges
    of those tensors, through ONNX Runtime's ``TensorQuantOverrides`` (rmin / rmax).
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    input_name, _ = src.input
    keep_fp32, per_channel, method = config.keep_fp32, config.per_channel, config.calibration_method
    keep = select.resolve(src.graph, keep_fp32, "keep_fp32") if keep_fp32 else {}
    excluded = sorted({node for nodes in keep.values() for node in nodes})
    prepared = preprocess(src, workdir, config.preprocess_graph)
    int8_path = workdir / "int8.onnx"
    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    per_run, options = calibration_options(prepared, stream, config)
    fixed = fixed_ranges or {}
    if fixed:
        options["TensorQuantOverrides"] = overrides(fixed, prepared)
    try:
        with quiet():  # the entropy and percentile calibrators print their progress
            quantize_static(str(prepared), str(int8_path), ranges.Reader(input_name, stream, per_run),
                            quant_format=QuantFormat.QDQ, per_channel=per_channel, reduce_range=ops.reduce_range,
                            activation_type=qtype[ops.activation], weight_type=qtype[ops.weight],
                            nodes_to_exclude=excluded, calibrate_method=calib.method_of(method),
                            extra_options=options)
    except (ValueError, RuntimeError, KeyError, IndexError) as exc:
        raise QuantizeError(f"ONNX Runtime's quantize_static failed on {src.info.get('class') or src.info.get('path')}"
                            f" ({type(exc).__name__}: {str(exc)[:300]}).") from exc
    int8_graph = read_model(int8_path)
    quantization = {
        "format": "QDQ", "per_channel": per_channel, **ops.to_dict(), "preprocess": config.preprocess_graph,
        "calibration": {"method": method, "batches": len(stream.sizes), "samples": stream.samples,
                        "samples_per_run": per_run,
                        **({"percentile": config.percentile} if method == "percentile" else {})},
        "keep_fp32": {"requested": list(keep_fp32), "nodes": excluded},
        "fixed_ranges": len(fixed)}
    info = sidecar.build(
        mode, source=src.info, quantization=quantization, kernel=kernel_of(int8_graph),
        fp32_bytes=src.path.stat().st_size, int8_bytes=int8_path.stat().st_size, seconds=time.perf_counter() - began,
        accuracy=sidecar.accuracy(src.path, int8_path, test_data) if test_data is not None else None, extra=extra)
    artifact.write(out, int8_path.read_bytes(), info)
    return OnnxModel(out)


def static_int8(
    model: Any,
    calibration: Iterable,
    *,
    out: str | Path | None = None,
    example_input: torch.Tensor | None = None,
    test_data: Iterable | None = None,
    metadata: dict[str, Any] | None = None,
    config: StaticInt8Config | None = None,
    **options: Any,
) -> OnnxModel:
    """Quantize ``model`` to static INT8 (QDQ, per-channel weights) for ONNX Runtime.

    Args:
        model: an ``nn.Module`` (exported first and checked against torch), an ``.onnx`` file, an
            artifact or checkpoint directory, or a ``torchslim.runtime`` model. FP32 only.
        calibration: a loader of real inputs; its first ``calibration_batches`` batches calibrate.
        out: the artifact directory (``model.onnx`` + ``model.json``), or an ``.onnx`` path (the
            sidecar beside it); None: a new temporary directory.
        example_input: a batch for the export (default: the first calibration batch).
        test_data: a loader; when given, the FP32 and INT8 graphs' accuracy over all of it is
            recorded in the sidecar.
        metadata: JSON-serialisable entries added to the sidecar (e.g. the dataset).
        config: the options (:class:`~torchslim.options.StaticInt8Config`: calibration_batches,
            calibration_method, percentile, operand_types, keep_fp32, per_channel,
            preprocess_graph); ``operand_types`` "auto" chooses from the CPU (see
            ``torchslim.quantize.operands``), "s8s8" is allowed and warns where it is slow.
        **options: any :class:`~torchslim.options.StaticInt8Config` field, laid over ``config``.

    Returns:
        The artifact as an :class:`~torchslim.runtime.OnnxModel` (``.info`` is the sidecar).

    Raises:
        OptionsError: a bad or unknown option (named, with what is valid).
        CalibrationError: an empty loader, or inputs that do not fit the model.
        ExportError: the torch model does not export (the failing module named).
        CorruptFileError: a damaged ``.onnx`` given.
        TorchSlimError: a keep_fp32 name that is not in the graph; an ``out`` where a file stands
            in the way.
        QuantizeError: ONNX Runtime's quantizer failed.
    Warns:
        SlowKernelWarning: ``operand_types="s8s8"`` on a CPU where S8S8 is slow.
    """
    began = time.perf_counter()
    cfg = configured(StaticInt8Config, "quantize.static_int8", config, options)
    check_out(out)
    ops = operands.choose(cfg.operand_types)
    with tempfile.TemporaryDirectory(prefix="torchslim-quantize-") as tmp:
        workdir = Path(tmp)
        src, stream = source_and_calibration(model, workdir, calibration, cfg.calibration_batches, example_input)
        return quantize_graph(src, stream, workdir, output_dir(out, "static"), mode="static", config=cfg, ops=ops,
                              test_data=test_data, began=began, extra=metadata)
