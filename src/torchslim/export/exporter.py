"""Export a torch model to one self-contained ONNX file, checked against torch before it is kept.

``torch.onnx.export(dynamo=True)`` captures the model with ``torch.export`` and translates the
graph; its optimiser folds a BatchNorm that follows a Conv or Gemm into that layer's weights (the
model is exported in eval mode, so running statistics are used); a BatchNorm it cannot fold stays a
``BatchNormalization`` node. The report counts both. The batch dimension is dynamic.

Before anything is written the graph is run by ONNX Runtime on the example input, on real batches
when given, and on one batch of another size, and its outputs are compared with the torch model's.
Over tolerance nothing is written. The file is written atomically (``core.io``).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from onnx import ModelProto, checker
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.core.io import atomic_write_bytes
from torchslim.core.macs import batch_size_of
from torchslim.export.locate import (
    exports_alone,
    failing_module,
    onnx_export_attempt,
    quiet,
    torch_export_attempt,
)
from torchslim.export.tidy import tidy
from torchslim.measure.latency import make_batch
from torchslim.options.quantize import ExportConfig, configured
from torchslim.train.batch import as_batch

INPUT, OUTPUT = "input", "output"
TWO_GB = 2**31
CHECK_ROWS = 128  # samples per comparison run: the check's memory follows the model, not the loader's batch


class ExportError(TorchSlimError):
    """The model cannot be exported, or the exported graph does not compute what the model does."""


@dataclasses.dataclass
class ExportReport:
    """What :func:`onnx` wrote and how closely the graph matches the torch model.

    ``max_abs_error`` is the largest |onnx - torch| over every checked output element;
    ``max_rel_error`` that divided by the largest |torch output|.
    """

    path: str
    bytes: int
    opset: int
    input_shape: list[int]
    max_abs_error: float
    max_rel_error: float
    tolerance: dict[str, float]
    checked_batches: list[int]
    batchnorm_folded: int
    batchnorm_kept: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _short(exc: BaseException) -> str:
    """The most telling line of an exporter error (its summary, not the advice around it)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.startswith("## Exception summary") and i + 1 < len(lines):
            return lines[i + 1][:300]
    return (lines[0] if lines else type(exc).__name__)[:300]


def _export_error(model: nn.Module, example: torch.Tensor, exc: Exception) -> ExportError:
    # A failure of torch.export (capture) is located with torch.export alone, which is quicker;
    # one of the translation to ONNX with the whole exporter.
    captures = exports_alone(model, (example,), {}, torch_export_attempt)
    attempt = onnx_export_attempt if captures else torch_export_attempt
    path, module = failing_module(model, example, attempt)
    where = (f"module {path!r} ({type(module).__name__})" if path
             else f"the forward of {type(model).__name__} itself (every submodule exports on its own)")
    return ExportError(
        f"{type(model).__name__} cannot be exported to ONNX: the failure is in {where}. Cause: "
        f"{_short(exc)} Rewrite that module without data-dependent Python control flow or "
        "conversions of tensors to Python values, or keep it out of the exported model.")


def _capture(model: nn.Module, example: torch.Tensor, opset: int | None) -> ModelProto:
    batch = torch.export.Dim("batch")
    try:
        with quiet():
            program = torch.onnx.export(
                model, (example,), dynamo=True, verbose=False, external_data=False, optimize=True,
                input_names=[INPUT], output_names=[OUTPUT], dynamic_shapes=({0: batch},),
                opset_version=opset)
    except Exception as exc:  # the exporter raises many types; each becomes one ExportError
        raise _export_error(model, example, exc) from exc
    return program.model_proto


def _standard_layout(model: nn.Module) -> nn.Module:
    """``model``, or a copy in the standard (contiguous) memory format when a weight is channels-last
    (``fit`` trains convolutions that way): its capture records layout ops that ONNX shape inference
    cannot follow, and its BatchNorms stay unfolded. The computation is the same."""
    if all(p.dim() != 4 or p.is_contiguous() for p in model.parameters()):
        return model
    return copy.deepcopy(model).to(memory_format=torch.contiguous_format)


def _runs_eagerly(model: nn.Module, example: torch.Tensor) -> None:
    try:
        with torch.no_grad():
            model(example)
    except Exception as exc:  # whatever the model raises, it is not an export problem
        raise ExportError(f"{type(model).__name__} fails on the example input of shape {tuple(example.shape)} "
                          f"before any export ({type(exc).__name__}: {str(exc).strip()[:300]}): pass an "
                          "input the model accepts.") from exc


def _check_inputs(example: torch.Tensor, data: Iterable | None, batches: int) -> list[torch.Tensor]:
    inputs = [example]
    if data is not None:
        for i, raw in enumerate(data):
            if i >= batches:
                break
            x = as_batch(raw)["x"]
            if tuple(x.shape[1:]) != tuple(example.shape[1:]):
                raise ExportError(f"check_data batch {i} has shape {tuple(x.shape)}, but the example input "
                                  f"has samples of shape {tuple(example.shape[1:])}: pass the model's data.")
            inputs.append(x)
    n = batch_size_of(example)
    inputs.append(make_batch(example, n + 3))  # another batch size: the batch dimension is dynamic
    return inputs


def _pieces(x: torch.Tensor, rows: int) -> Iterator[torch.Tensor]:
    # A check batch of thousands of samples would cost thousands of samples of activations in
    # torch and in the session at once; outputs are per sample, so pieces compare the same.
    yield from (x[start:start + rows] for start in range(0, max(len(x), 1), rows))


def compare(session: Any, model: nn.Module, inputs: list[torch.Tensor]) -> tuple[float, float]:
    """``(max |session - model|, max |model output|)`` over ``inputs`` (run ``CHECK_ROWS`` samples at a time)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    worst_abs, scale = 0.0, 0.0
    for whole in inputs:
        for x in _pieces(whole, CHECK_ROWS):
            with torch.no_grad():
                ref = model(x.to(device)).float().cpu().numpy()
            got = session.run(None, {INPUT: x.detach().float().cpu().contiguous().numpy()})[0]
            if got.shape != ref.shape:
                raise ExportError(f"The exported graph returns shape {got.shape} for input "
                                  f"{tuple(x.shape)}, the model {ref.shape}.")
            worst_abs = max(worst_abs, float(np.max(np.abs(got - ref))) if ref.size else 0.0)
            scale = max(scale, float(np.max(np.abs(ref))) if ref.size else 0.0)
    return worst_abs, scale


def onnx(model: nn.Module, example_input: torch.Tensor, path: str | Path, *, check_data: Iterable | None = None,
         config: ExportConfig | None = None, **options: Any) -> ExportReport:
    """Export ``model`` to the ONNX file ``path`` (input ``"input"``, output ``"output"``).

    Args:
        model: a module taking one tensor; exported in eval mode (its mode is restored).
        example_input: a batch ``(N, ...)`` the model accepts; a batch of one is repeated to two
            for the capture (``torch.export`` specialises a size-1 dimension).
        path: the ``.onnx`` file to write; its directory is created.
        check_data: a loader of real batches; its first ``check_batches`` batches are checked
            too (recommended: the example alone may not exercise every path).
        config: the options (:class:`~torchslim.options.ExportConfig`): ``opset`` (default: the
            exporter's recommended one), ``check_batches``, and the tolerances: the graph is
            accepted when max |onnx - torch| <= ``atol`` + ``rtol`` x max |torch|.
        **options: any :class:`~torchslim.options.ExportConfig` field, laid over ``config``.

    Returns:
        An :class:`ExportReport` (errors, BatchNorm folding, size, opset).

    Raises:
        OptionsError: a bad or unknown option.
        ExportError: the model does not export (the failing module is named), the graph does not
            match the model within tolerance, or it is over 2 GB; nothing is written then.
    """
    import onnxruntime as ort

    began = time.perf_counter()
    cfg = configured(ExportConfig, "export.onnx", config, options)
    atol, rtol = cfg.atol, cfg.rtol
    if not isinstance(model, nn.Module):
        raise ExportError(f"export.onnx needs an nn.Module, got {type(model).__name__}.")
    n = batch_size_of(example_input)
    capture_input = make_batch(example_input, 2) if n == 1 else example_input
    was_training = model.training
    model.eval()
    try:
        _runs_eagerly(model, capture_input)
        inputs = _check_inputs(example_input, check_data, cfg.check_batches)  # shapes checked before the capture
        proto = tidy(_capture(_standard_layout(model), capture_input.contiguous(), cfg.opset),
                     (name for name, _ in model.named_modules()))
        if proto.ByteSize() >= TWO_GB:
            raise ExportError(f"The exported model is {proto.ByteSize() / 1e9:.1f} GB; a single ONNX file "
                              "holds at most 2 GB.")
        checker.check_model(proto)
        data = proto.SerializeToString()
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        worst_abs, scale = compare(session, model, inputs)
    finally:
        model.train(was_training)
    worst_rel = worst_abs / max(scale, 1e-12)
    if worst_abs > atol + rtol * scale:
        raise ExportError(
            f"The exported graph of {type(model).__name__} differs from the model: max abs error "
            f"{worst_abs:.3g}, relative {worst_rel:.3g} over {sum(len(x) for x in inputs)} samples, "
            f"above atol {atol:g} + rtol {rtol:g} x max |output| ({scale:.3g}). The model's forward "
            "probably depends on something the trace fixed (a Python value, a data-dependent branch "
            f"taken for the example). Nothing was written to {path}.")
    atomic_write_bytes(path, data)
    batchnorms = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    kept = sum(node.op_type == "BatchNormalization" for node in proto.graph.node)
    return ExportReport(
        path=str(path), bytes=len(data), opset=next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        input_shape=list(example_input.shape[1:]), max_abs_error=worst_abs, max_rel_error=worst_rel,
        tolerance={"atol": atol, "rtol": rtol}, checked_batches=[len(x) for x in inputs],
        batchnorm_folded=max(batchnorms - kept, 0), batchnorm_kept=kept, seconds=time.perf_counter() - began)
