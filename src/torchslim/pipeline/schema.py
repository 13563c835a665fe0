"""The recipe's sections other than its strategies: data, measurement, scenarios, ``--quick`` and
the text task's settings, each a typed section whose fields are documented where they are defined.

Shared by the recipe parser (:mod:`torchslim.pipeline.recipe`), the steps and the runner; imports no
torch.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from torchslim.options.base import Options
from torchslim.options.measure import MAX_TIMING_SECONDS, TARGETS, MeasureConfig


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


class ScenarioConfig(Strict):
    """Each scenario's accuracy floor (points below the teacher) and budget (a fraction of the
    teacher's latency on torch eager at the primary setting, or of its bytes).

    resource-limited: the fastest (or smallest) row within ``accuracy_floor`` and ``resource_budget``;
    accuracy-sensitive: the most accurate row within ``sensitive_floor`` and the latency (and size)
    budgets; balanced: the knee of the accuracy-latency Pareto front within ``balanced_floor`` and
    ``balanced_budget`` (a knee far below the teacher is a different product, not a balance).
    """

    accuracy_floor: float = Field(1.0, ge=0, le=100)
    """resource-limited: at most this many points below the teacher."""
    resource: Literal["latency", "bytes"] = "latency"
    """resource-limited: what is minimised, latency or bytes."""
    resource_budget: float = Field(1.0, gt=0)
    """resource-limited: at most this times the teacher's latency (or bytes)."""
    sensitive_floor: float = Field(1.0, ge=0, le=100)
    """accuracy-sensitive: at most this many points below the teacher."""
    latency_budget: float = Field(0.5, gt=0)
    """accuracy-sensitive: at most this times the teacher's latency."""
    size_budget: float | None = Field(None, gt=0)
    """accuracy-sensitive: at most this times the teacher's bytes; none: no size budget."""
    balanced_floor: float = Field(3.0, ge=0, le=100)
    """balanced: at most this many points below the teacher."""
    balanced_budget: float = Field(1.0, gt=0)
    """balanced: at most this times the teacher's latency."""


class QuickConfig(Strict):
    """What ``--quick`` changes: every strategy runs, on less data and fewer epochs."""

    epochs: int = Field(1, gt=0)
    """At most this many epochs per training step."""
    train_subset: int = Field(6000, gt=0)
    """At most this many training samples (a seeded subset)."""
    test_subset: int = Field(2000, gt=0)
    """At most this many test samples (a seeded subset)."""
    calibration_batches: int = Field(4, gt=0)
    """At most this many INT8 calibration batches."""
    rounds: int = Field(1, gt=0)
    """Timing rounds per setting."""
    sample_size: int = Field(64, gt=0)
    """Text: at most this many sentences for the layer choice and head importance."""


class TextConfig(Strict):
    """The text task's settings: how sentences are tokenized and how agreement is measured."""

    max_length: int = Field(64, ge=3)
    """Tokens per sentence (longer ones are truncated)."""
    spearman_size: int = Field(1000, ge=3)
    """Pairwise Spearman agreement over the first this-many test sentences."""
    neighbours: int = Field(10, gt=0)
    """k of the k-nearest-neighbour overlap with the teacher."""


__all__ = ["MAX_TIMING_SECONDS", "TARGETS", "DataConfig", "MeasureConfig", "QuickConfig", "ScenarioConfig", "Strict",
           "TextConfig"]
