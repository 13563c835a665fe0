"""Quantization-aware training, ending in the same ONNX Runtime INT8 artifact as static INT8.

``prepare_qat(model)`` returns a copy in which every Conv and Linear (but those kept in FP32) is
wrapped: its weight is fake-quantized per output channel and its input per tensor, on ONNX
Runtime's grids (``fake_quant``). Train it with ``torchslim.fit`` like any model, or as the
student of a ``DistillTask`` whose teacher is the FP32 model. ``qat_int8`` then builds the
artifact by this route:

1. ``strip_qat``: the wrappers are removed, leaving the trained FP32 weights in the original
   module structure;
2. that model is exported (``torchslim.export.onnx``, checked against torch); BatchNorm folds
   into the convolutions, which leaves the quantized weights unchanged: a symmetric per-channel
   grid scales with the channel, so round(a w / (a s)) = round(w / s);
3. ONNX Runtime's ``quantize_static`` (QDQ, per-channel weights, the same operand types) with the
   **input range of every Conv / Gemm / MatMul set to the range learned in QAT**
   (``TensorQuantOverrides`` rmin/rmax; a tensor feeding several layers gets the union of their
   ranges). Tensors QAT did not simulate — the operands of residual additions, the inputs of
   layers kept in FP32 — get ranges calibrated on the calibration batches (``method``).

The sidecar records this route, the learned ranges and the calibrated remainder.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from torchslim.core.errors import TorchSlimError
from torchslim.export.tidy import module_of
from torchslim.options.base import OptionsError, shown
from torchslim.options.quantize import QATConfig, configured
from torchslim.quantize import calibration as calib
from torchslim.quantize import operands
from torchslim.quantize.fake_quant import ActivationQuant, fake_quant_weight, weight_range
from torchslim.quantize.static import output_dir, quantize_graph, source_and_calibration
from torchslim.runtime import OnnxModel
from torchslim.train.batch import as_batch

QAT_ATTR = "_torchslim_qat"
LAYER_OPS = ("Conv", "Gemm", "MatMul")
ROUTE = ("QAT-trained FP32 weights exported (BatchNorm folded), then ONNX Runtime quantize_static with "
         "the input range of every Conv/Gemm/MatMul set to the range learned in QAT (TensorQuantOverrides "
         "rmin/rmax); tensors QAT did not simulate calibrated on the calibration batches")


class _FakeQuantLayer(nn.Module):
    def __init__(self, module: nn.Module, act: ActivationQuant, wrange: tuple[int, int], per_channel: bool) -> None:
        super().__init__()
        self.module, self.act = module, act
        self.wmin, self.wmax = wrange
        self.per_channel = per_channel

    def quantized_weight(self) -> torch.Tensor:
        return fake_quant_weight(self.module.weight, self.wmin, self.wmax, self.per_channel)


class FakeQuantConv(_FakeQuantLayer):
    """A Conv1d/2d/3d whose input and weight are fake-quantized."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module._conv_forward(self.act(x), self.quantized_weight(), self.module.bias)


class FakeQuantLinear(_FakeQuantLayer):
    """A Linear whose input and weight are fake-quantized."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(self.act(x), self.quantized_weight(), self.module.bias)


def _wrappable(module: nn.Module) -> type[_FakeQuantLayer] | None:
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return FakeQuantConv
    if isinstance(module, nn.Linear):
        return FakeQuantLinear
    return None


def _kept(path: str, keep: Sequence[str]) -> bool:
    return any(path == k or path.startswith(k + ".") for k in keep)


def _replace(root: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, new)


def wrappers(model: nn.Module) -> dict[str, _FakeQuantLayer]:
    """``{module path of the wrapped layer: wrapper}`` of a QAT model."""
    return {path: m for path, m in model.named_modules() if isinstance(m, _FakeQuantLayer)}


@torch.no_grad()
def _calibrate(model: nn.Module, data: Iterable, batches: int) -> int:
    acts = [w.act for w in wrappers(model).values()]
    was_training = model.training
    model.eval()
    for act in acts:
        act.calibrating = True
    device = next(model.parameters()).device
    seen = 0
    try:
        for i, raw in enumerate(data):
            if i >= batches:
                break
            model(as_batch(raw, device)["x"])
            seen += 1
    finally:
        for act in acts:
            act.calibrating = False
        model.train(was_training)
    if not seen:
        raise calib.CalibrationError("The calibration loader yielded no batches: QAT ranges need at least one.")
    return seen


def prepare_qat(model: nn.Module, calibration: Iterable | None = None, *, config: QATConfig | None = None,
                **options: Any) -> nn.Module:
    """A fake-quantized copy of ``model`` to train (``model`` itself is not changed).

    Args:
        model: the FP32 model.
        calibration: a loader whose first ``calibration_batches`` batches initialise the
            activation ranges (min/max); without it they start from the first training batch.
        config: the options (:class:`~torchslim.options.QATConfig`); this uses operand_types (the
            activation type trained for, and the one the artifact will use), ranges ("observe":
            running min/max, EMA with ``range_momentum``; "learn": trained), keep_fp32 (module
            paths whose Conv/Linear layers stay unquantized), per_channel and
            calibration_batches. The model keeps the config for :func:`qat_int8`.
        **options: any :class:`~torchslim.options.QATConfig` field, laid over ``config``.

    Raises:
        OptionsError: a bad or unknown option.
        TorchSlimError: a keep_fp32 path that does not exist, or a model with no Conv or Linear to
            quantize.
        CalibrationError: a calibration loader that yields no batch.
    """
    cfg = configured(QATConfig, "quantize.prepare_qat", config, options)
    ops = operands.choose(cfg.operand_types)
    names = {name for name, _ in model.named_modules()}
    for path in cfg.keep_fp32:
        if path not in names:
            from torchslim.core.registry import did_you_mean

            raise TorchSlimError(f"keep_fp32: no module at path {path!r}.{did_you_mean(path, sorted(names))}")
    qmodel = copy.deepcopy(model)
    wrange = weight_range(ops.reduce_range)
    for path, module in list(qmodel.named_modules()):
        kind = _wrappable(module)
        if kind is not None and not _kept(path, cfg.keep_fp32):
            act = ActivationQuant(ops.activation, cfg.ranges == "learn", cfg.range_momentum)
            _replace(qmodel, path, kind(module, act, wrange, cfg.per_channel))
    if not wrappers(qmodel):
        raise TorchSlimError(f"{type(model).__name__} has no Conv or Linear layer to quantize (outside keep_fp32).")
    calibrated = _calibrate(qmodel, calibration, cfg.calibration_batches) if calibration is not None else 0
    object.__setattr__(qmodel, QAT_ATTR, {"config": cfg, "operands": ops, "calibration_batches": calibrated,
                                          "weight_range": list(wrange)})
    return qmodel


def _settings(qmodel: nn.Module) -> dict[str, Any]:
    settings = getattr(qmodel, QAT_ATTR, None)
    if settings is None or not wrappers(qmodel):
        raise TorchSlimError(f"{type(qmodel).__name__} is not a QAT model: build it with prepare_qat(model).")
    return settings


def strip_qat(qmodel: nn.Module) -> nn.Module:
    """The plain model with the QAT-trained weights: every wrapper replaced by its layer."""
    _settings(qmodel)
    plain = copy.deepcopy(qmodel)
    for path, wrapper in wrappers(plain).items():
        _replace(plain, path, wrapper.module)
    plain.__dict__.pop(QAT_ATTR, None)
    return plain


def learned_ranges(qmodel: nn.Module, fp32: onnx.ModelProto) -> dict[str, tuple[float, float]]:
    """``{graph tensor: (lo, hi)}``: the input tensor of each wrapped layer's Conv/Gemm/MatMul node
    in the exported graph, with the range learned in QAT (the union where layers share an input).

    Raises:
        TorchSlimError: a wrapped layer has no such node in the graph.
    """
    inputs: dict[str, list[str]] = {}
    for node in fp32.graph.node:
        if node.op_type in LAYER_OPS and (path := module_of(node)) is not None:
            inputs.setdefault(path, []).append(node.input[0])
    layers = wrappers(qmodel)
    missing = [path for path in layers if path not in inputs]
    if missing:
        raise TorchSlimError(f"QAT layers {', '.join(missing[:5])} have no Conv/Gemm/MatMul node in the "
                             "exported graph, so their learned ranges cannot be carried over.")
    merged: dict[str, tuple[float, float]] = {}
    for path, layer in layers.items():
        lo, hi = layer.act.range()
        for tensor in inputs[path]:
            old = merged.get(tensor)
            merged[tensor] = (min(lo, old[0]), max(hi, old[1])) if old else (lo, hi)
    return merged


# What the trained model was built with: the artifact must use the same, whatever qat_int8 is given.
TRAINED_WITH = ("keep_fp32", "per_channel", "operand_types", "ranges", "range_momentum")


def _artifact_config(settings: dict[str, Any], config: QATConfig | None, options: dict[str, Any]) -> QATConfig:
    prepared: QATConfig = settings["config"]
    cfg = configured(QATConfig, "quantize.qat_int8", config if config is not None else prepared, options)
    for name in TRAINED_WITH:
        if getattr(cfg, name) != getattr(prepared, name):
            raise OptionsError(f"quantize.qat_int8: {name} = {shown(getattr(cfg, name))} differs from the "
                               f"{shown(getattr(prepared, name))} the model was prepared and trained with "
                               "(prepare_qat); drop it here.")
    return cfg


def qat_int8(qmodel: nn.Module, calibration: Iterable, *, out: str | Path | None = None,
             example_input: torch.Tensor | None = None, test_data: Iterable | None = None,
             training: dict | None = None, metadata: dict[str, Any] | None = None,
             config: QATConfig | None = None, **options: Any) -> OnnxModel:
    """The INT8 ONNX Runtime artifact of a QAT-trained model (the route in the module docstring).

    Args:
        qmodel: a model from :func:`prepare_qat`, trained.
        calibration: real batches; the first ``calibration_batches`` calibrate the tensors QAT
            did not simulate (with ``calibration_method``) and check the export.
        out: as for ``static_int8``.
        example_input: as for ``static_int8``.
        test_data: as for ``static_int8``.
        training: what the QAT run did (epochs, teacher, ...), recorded in the sidecar.
        metadata: JSON-serialisable entries added to the sidecar.
        config: the options; default: those ``qmodel`` was prepared with. Its calibration
            options and preprocess_graph apply here; those the model was trained with
            (keep_fp32, per_channel, operand_types, ranges) must not differ.
        **options: any :class:`~torchslim.options.QATConfig` field, laid over ``config``.

    Returns:
        The artifact as an :class:`~torchslim.runtime.OnnxModel`.

    Raises:
        OptionsError: a bad option, or one that differs from the model's training.
        TorchSlimError: not a QAT model; CalibrationError, ExportError, QuantizeError as for
            ``static_int8``.
    """
    began = time.perf_counter()
    settings = _settings(qmodel)
    cfg = _artifact_config(settings, config, options)
    plain = strip_qat(qmodel).eval()
    ops: operands.Operands = settings["operands"]
    with tempfile.TemporaryDirectory(prefix="torchslim-qat-") as tmp:
        workdir = Path(tmp)
        src, arrays = source_and_calibration(plain, workdir, calibration, cfg.calibration_batches, example_input)
        ranges = learned_ranges(qmodel, src.graph)
        extra = {"qat": {"route": ROUTE, "ranges": cfg.ranges, "momentum": cfg.range_momentum,
                         "weight_range": settings["weight_range"], "per_channel": cfg.per_channel,
                         "initial_calibration_batches": settings["calibration_batches"],
                         "learned_input_ranges": {t: list(r) for t, r in ranges.items()},
                         "layers": len(wrappers(qmodel)), "training": training},
                 **(metadata or {})}
        return quantize_graph(src, arrays, workdir, output_dir(out, "qat"), mode="qat", config=cfg, ops=ops,
                              test_data=test_data, began=began, fixed_ranges=ranges, extra=extra)
