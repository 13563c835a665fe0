"""Measurement options: how final models are timed and on which deployment targets.

A comparison's ``measure:`` recipe section is a :class:`MeasureConfig`, and so are the timing flags
of ``torchslim eval`` (which measures each source on the runtime it runs on, so it has no targets).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from torchslim.core.registry import did_you_mean
from torchslim.options.base import Options

# Deployment targets a final model is measured on: name -> (runtime, what it is). A torch model runs
# on torch-fp32 and, exported, on ort-fp32; an INT8 ONNX model (a quantize step's) on ort-int8 only.
TARGETS = {
    "torch-fp32": ("torch-eager", "torch eager, FP32: the model as trained"),
    "ort-fp32": ("onnxruntime", "ONNX Runtime, FP32: the same model exported to ONNX"),
    "ort-int8": ("onnxruntime", "ONNX Runtime, INT8: the quantize step's ONNX model"),
}
MAX_TIMING_SECONDS = 600.0  # per setting: beyond this a comparison's timing stage takes hours


class MeasureConfig(Options):
    """How final models are measured.

    ``targets``: the deployment targets every final model is measured on (each that applies to
    it); the baseline strategy is always measured on torch-fp32 (the user's model as run today)
    and, when an ONNX Runtime target is listed, on ort-fp32 (the same-runtime baseline of every
    ONNX Runtime row). Timing runs interleaved rounds per (batch size, thread count) until each
    speed-up's 95% interval is within +-5% or ``max_seconds`` of rounds, at least ``rounds``.
    """

    batch_sizes: list[int] = Field(default_factory=lambda: [1, 64], min_length=1)
    """Batch sizes latency is timed at (each a setting of its own)."""
    thread_counts: list[int] = Field(default_factory=lambda: [1], min_length=1)
    """Thread counts latency is timed at (each a setting of its own; pinned to that many cores)."""
    targets: list[str] = Field(default_factory=lambda: list(TARGETS), min_length=1)
    """Deployment targets each final model is measured on: torch-fp32, ort-fp32, ort-int8."""
    rounds: int = Field(5, gt=0, le=1000)
    """Interleaved timing rounds that always run per setting."""
    max_seconds: float = Field(60.0, gt=0, le=MAX_TIMING_SECONDS)
    """Time cap of the rounds per setting (about 10 models x 3 targets x 2 batch sizes: ~5 minutes)."""
    min_seconds: float = Field(0.5, gt=0)
    """Text task: seconds of sentences per timed measurement."""

    @field_validator("batch_sizes", "thread_counts")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        if any(v <= 0 for v in values):
            raise ValueError(f"every entry must be a positive integer, got {values}")
        return values

    @field_validator("targets")
    @classmethod
    def _known_targets(cls, values: list[str]) -> list[str]:
        for name in values:
            if name not in TARGETS:
                raise ValueError(f"unknown deployment target {name!r}.{did_you_mean(name, list(TARGETS))} "
                                 f"Targets: {', '.join(TARGETS)}")
        if len(set(values)) != len(values):
            raise ValueError(f"targets are listed more than once: {values}; list each once")
        return values


__all__ = ["MAX_TIMING_SECONDS", "TARGETS", "MeasureConfig"]
