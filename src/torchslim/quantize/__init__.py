"""INT8 quantization that ships: ONNX Runtime artifacts, post-training or quantization-aware.

* :func:`static_int8` — calibrated activation ranges, QDQ format, per-channel weights.
* :func:`dynamic_int8` — weights ahead of time, activations per batch (Linear-heavy models).
* :func:`prepare_qat` / :func:`qat_int8` — fake-quantized training in torch, then the same
  static INT8 artifact with the activation ranges learned in training; :func:`run_qat` does the
  whole route (prepare, fine-tune, optionally distilled, artifact) in one call.

Each takes its options as one config (``config=``: :class:`~torchslim.options.StaticInt8Config`,
:class:`~torchslim.options.DynamicInt8Config`, :class:`~torchslim.options.QATConfig`) or as keyword
arguments that build it.

Each ends in one ``.onnx`` that plain ``onnxruntime`` runs, with a JSON sidecar recording the
source, the settings, the operand types chosen for this CPU and why (``operands``), the CPU's
features and, when test data is given, the accuracy measured.
"""

from torchslim.quantize.calibration import METHODS, CalibrationError
from torchslim.quantize.dynamic import dynamic_int8
from torchslim.quantize.operands import Operands, SlowKernelWarning, choose
from torchslim.quantize.qat import FakeQuantConv, FakeQuantLinear, prepare_qat, qat_int8, strip_qat
from torchslim.quantize.qat_run import run_qat
from torchslim.quantize.static import QuantizeError, static_int8

__all__ = [
    "METHODS", "CalibrationError", "FakeQuantConv", "FakeQuantLinear", "Operands", "QuantizeError",
    "SlowKernelWarning", "choose", "dynamic_int8", "prepare_qat", "qat_int8", "run_qat", "static_int8",
    "strip_qat",
]
