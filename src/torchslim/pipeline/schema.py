"""The recipe's sections other than its strategies: data, measurement, scenarios, ``--quick`` and
the text task's settings, each a typed section whose fields are documented where they are defined.

Shared by the recipe parser (:mod:`torchslim.pipeline.recipe`), the steps and the runner; imports no
torch.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from torchslim.core.registry import did_you_mean
from torchslim.options.base import Options


class Strict(Options):
    """Base of every recipe section: unknown keys are errors, values are not coerced silently, and
    no number is NaN or infinite (one setting for every float of every section and step); each
    field's description is the docstring under it."""


class DataConfig(Strict):
    """The dataset every strategy trains, calibrates and is measured on."""

    name: str = "fashion-mnist"
    """A registered dataset (see `torchslim datasets`); its declared task is the recipe's."""
    batch_size: int = Field(128, gt=0)
    """Training batch size."""
    val_size: int | None = Field(None, ge=0)
    """Training samples held out for validation (image datasets); none: the dataset's default."""
    augment: bool = True
    """Random augmentation of training images (where the dataset has any)."""
    root: str | None = None
    """Directory holding the dataset's files; none: the system copy or $TORCHSLIM_DATA."""
    train_subset: int | None = Field(None, gt=0)
    """Use only this many training samples (a seeded random subset); none: all of them."""
    test_subset: int | None = Field(None, gt=0)
    """Use only this many test samples (a seeded random subset); none: all of them."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Further keyword arguments of the dataset's loader."""


# Deployment targets a final model is measured on: name -> (runtime, what it is). A torch model runs
# on torch-fp32 and, exported, on ort-fp32; an INT8 ONNX model (a quantize step's) on ort-int8 only.
TARGETS = {
    "torch-fp32": ("torch-eager", "torch eager, FP32: the model as trained"),
    "ort-fp32": ("onnxruntime", "ONNX Runtime, FP32: the same model exported to ONNX"),
    "ort-int8": ("onnxruntime", "ONNX Runtime, INT8: the quantize step's ONNX model"),
}
MAX_TIMING_SECONDS = 600.0  # per setting: beyond this a comparison's timing stage takes hours


class MeasureConfig(Strict):
    """How final models are measured.

    ``targets``: the deployment targets every final model is measured on (each that applies to
    it); the baseline strategy is always measured on torch-fp32 (the user's model as run today)
    and, when an ONNX Runtime target is listed, on ort-fp32 (the same-runtime baseline of every
    ONNX Runtime row). Timing runs interleaved rounds per (batch size, threads) until each
    speed-up's 95% interval is within +-5% or ``max_seconds`` of rounds, at least ``rounds``.
    """

    batch_sizes: list[int] = Field(default_factory=lambda: [1, 64], min_length=1)
    threads: list[int] = Field(default_factory=lambda: [1], min_length=1)
    targets: list[str] = Field(default_factory=lambda: list(TARGETS), min_length=1)
    rounds: int = Field(5, gt=0, le=1000)  # timing rounds that always run per setting
    # time cap per setting; ~10 models x 3 targets x 2 batch sizes stay under ~5 minutes of timing
    max_seconds: float = Field(60.0, gt=0, le=MAX_TIMING_SECONDS)
    min_seconds: float = Field(0.5, gt=0)  # text task: seconds per timed measurement

    @field_validator("batch_sizes", "threads")
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


class ScenarioConfig(Strict):
    """Each scenario's accuracy floor (points below the teacher) and budget (a fraction of the
    teacher's latency on torch eager at the primary setting, or of its bytes)."""

    # resource-limited: the fastest (or smallest) row at most accuracy_floor points below the
    # teacher, and at most resource_budget x the teacher's latency (or bytes)
    accuracy_floor: float = Field(1.0, ge=0, le=100)
    resource: Literal["latency", "bytes"] = "latency"
    resource_budget: float = Field(1.0, gt=0)
    # accuracy-sensitive: the most accurate row at most sensitive_floor points below the teacher
    # whose latency is at most latency_budget x the teacher's (and, when given, whose file is at
    # most size_budget x the teacher's bytes)
    sensitive_floor: float = Field(1.0, ge=0, le=100)
    latency_budget: float = Field(0.5, gt=0)
    size_budget: float | None = Field(None, gt=0)
    # balanced: the knee of the accuracy-latency Pareto front among rows at most balanced_floor
    # points below the teacher and at most balanced_budget x its latency (a knee far below it is
    # a different product, not a balance)
    balanced_floor: float = Field(3.0, ge=0, le=100)
    balanced_budget: float = Field(1.0, gt=0)


class QuickConfig(Strict):
    """What ``--quick`` changes: every strategy runs, on less data and fewer epochs."""

    epochs: int = Field(1, gt=0)
    train_subset: int = Field(6000, gt=0)
    test_subset: int = Field(2000, gt=0)
    calibration_batches: int = Field(4, gt=0)
    rounds: int = Field(1, gt=0)
    sample_size: int = Field(64, gt=0)  # text: sentences the layer choice and head importance read


class TextConfig(Strict):
    """The text task's settings: how sentences are tokenized and how agreement is measured."""

    max_length: int = Field(64, ge=3)  # tokens per sentence (longer ones are truncated)
    spearman_size: int = Field(1000, ge=3)  # pairwise Spearman over the first N test sentences
    neighbours: int = Field(10, gt=0)  # k of the k-NN overlap


__all__ = ["MAX_TIMING_SECONDS", "TARGETS", "DataConfig", "MeasureConfig", "QuickConfig", "ScenarioConfig", "Strict",
           "TextConfig"]
