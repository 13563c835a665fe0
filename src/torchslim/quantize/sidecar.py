"""The JSON sidecar written beside an INT8 artifact's .onnx: what was quantized, how, on what CPU, and
what it kept (``runtime.artifact.write`` writes it as ``model.json``)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torchslim.measure.system import machine_info
from torchslim.train.evaluate import evaluate

FORMAT = "torchslim-int8/1"


def accuracy(fp32_path: Path, int8_path: Path, data: Iterable) -> dict[str, Any]:
    """Accuracy and loss of the FP32 and the INT8 graph over all of ``data``, both on ONNX Runtime."""
    from torchslim.runtime import OnnxModel

    fp32 = evaluate(OnnxModel(fp32_path), data)
    int8 = evaluate(OnnxModel(int8_path), data)
    return {"fp32_onnx": fp32, "int8": int8, "delta_points": int8["accuracy"] - fp32["accuracy"],
            "runtime": "onnxruntime"}


def build(mode: str, *, source: dict[str, Any], quantization: dict[str, Any], kernel: str, fp32_bytes: int,
          int8_bytes: int, seconds: float, accuracy: dict[str, Any] | None = None,
          extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sidecar record (``runtime.artifact.write`` adds the ``.onnx``'s hash and size)."""
    machine = machine_info()
    return {
        "format": FORMAT, "mode": mode, "source": source, "quantization": quantization, "kernel": kernel,
        "runtime": "onnxruntime",
        "sizes": {"fp32_onnx_bytes": fp32_bytes, "int8_onnx_bytes": int8_bytes,
                  "ratio": round(fp32_bytes / max(int8_bytes, 1), 3)},
        "accuracy": accuracy,
        "cpu": {"model": machine["cpu"], "flags": machine["cpu_flags"], "machine": machine["machine"]},
        "versions": machine["versions"], "seconds": round(seconds, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(extra or {}),
    }
