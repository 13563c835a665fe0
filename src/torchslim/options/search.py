"""The ``search:`` section of a recipe: what varies, what is measured, what must hold, how long.

A search varies fields of the recipe's step configs (``prune.ratio``, ``distill.width``, ...), so
the space is written in the names, types and bounds the step classes already define
(:mod:`torchslim.pipeline.search_space` checks every key and range against them); three keys choose the
shape of a candidate instead of a field: ``route`` (``pruned``: the teacher pruned then recovered;
``student``: a fresh student distilled from the teacher), ``recovery`` (how a pruned teacher
recovers: ``train`` or ``distill``) and ``quantize`` (``none``, ``static`` INT8 or ``qat``).

Imports no torch: the section is read with the recipe.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from torchslim.options.base import Options

OBJECTIVES = {"accuracy": "maximize", "latency": "minimize", "bytes": "minimize"}
ROUTES = ("pruned", "student")
RECOVERIES = ("train", "distill")
QUANTIZE = ("none", "static", "qat")
SPECIAL = {"route": ROUTES, "recovery": RECOVERIES, "quantize": QUANTIZE}
_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_budget(value: Any) -> float:
    """Seconds from a budget: a number of seconds, or text such as ``90s``, ``60m``, ``1h30m``.

    Raises:
        ValueError: not a positive number of seconds, or text in another form.
    """
    if isinstance(value, bool):
        raise ValueError(f"budget {value!r} is not a duration; give seconds or text such as 90s, 60m, 1h30m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*(\d+(\.\d+)?\s*[smh]\s*)+", value):
        seconds = sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([smh])", value))
    elif isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
        seconds = float(value)
    else:
        raise ValueError(f"budget {value!r} is not a duration; give seconds or text such as 90s, 60m, 1h30m")
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"budget {value!r} must be a positive duration")
    return seconds


def human_seconds(seconds: float) -> str:
    """``3725`` -> ``1h02m05s``; ``75`` -> ``1m15s``."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Range(Options):
    """A numeric dimension: values from ``low`` to ``high`` (both included), on a log scale when
    ``log``, in steps of ``step`` when given."""

    low: float | int
    """Smallest value tried."""
    high: float | int
    """Largest value tried."""
    log: bool = False
    """Sample on a log scale (learning rates)."""
    step: float | int | None = Field(None, gt=0)
    """Only values low + k * step; none: any value (any integer for an integer field)."""

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError(f"low = {self.low} is above high = {self.high}: a range runs from low up to high")
        if self.log and self.low <= 0:
            raise ValueError(f"log = true needs low > 0 (got low = {self.low}): a log scale has no zero")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined (Optuna samples either on a log scale or on a grid)")
        return self


def _dimension_form(value: Any) -> str | None:
    """Which form a dimension is written in: a list of choices or a ``{low, high}`` range."""
    if isinstance(value, list):
        return "list[choices]"
    return "Range[low, high]" if isinstance(value, dict | Range) else None


# A dimension is told apart by its form, so a bad range is explained in the range's own words only
# (not also as "not a list"); the tags read like pydantic's own union labels, which a recipe error
# leaves out of the key path it names.
DimensionSpec = Annotated[
    Annotated[list[Any], Tag("list[choices]")] | Annotated[Range, Tag("Range[low, high]")],
    Discriminator(_dimension_form, custom_error_type="dimension_form",
                  custom_error_message="a dimension is a list of choices (e.g. [l1, l2]) or a range "
                                       "(e.g. {low: 0.2, high: 0.8})")]


class Constraints(Options):
    """What a candidate must satisfy to be on the front and picked; each measured on the trial."""

    accuracy_floor: float | None = Field(1.0, ge=0, le=100)
    """At most this many points below the teacher's validation accuracy; none: no floor."""
    latency_budget: float | None = Field(None, gt=0)
    """At most this fraction of the teacher's latency on the target (0.33: at least 3x faster); none: no budget."""
    bytes_budget: float | None = Field(None, gt=0)
    """At most this fraction of the teacher's bytes on the target; none: no budget."""


class Target(Options):
    """Where a candidate's latency is measured: the deployment runtime, batch size and threads."""

    runtime: Literal["ort", "torch"] = "ort"
    """ort: every candidate on ONNX Runtime (FP32, or INT8 when quantized) against the teacher on ONNX Runtime FP32; torch: FP32 candidates on torch eager against the teacher on torch eager (then quantize must be none)."""
    batch_size: int | None = Field(None, gt=0)
    """Batch size latency is timed at; none: the largest of the recipe's measure.batch_sizes."""
    threads: int | None = Field(None, gt=0)
    """Threads latency is timed at; none: the first of the recipe's measure.thread_counts."""
    seconds: float = Field(6.0, gt=0, le=120)
    """Time cap of one candidate's interleaved timing against the teacher (at least 3 rounds run)."""


class EarlyStop(Options):
    """Low-fidelity stopping of hopeless trials (see :mod:`torchslim.search.trial`): after each
    training epoch, a trial whose validation accuracy, plus the largest gain from that point of
    training to the end seen in finished trials (plus ``margin``), is still below the accuracy
    floor cannot reach the floor and is stopped; and a candidate whose measured latency (taken on
    its untrained architecture, which fixes it) is over the latency budget is never trained."""

    enabled: bool = True
    """Stop hopeless trials early; false: every trial trains to the end."""
    min_trials: int = Field(3, ge=1)
    """Finished trials needed (per route) before their learning curves may stop another."""
    margin: float = Field(1.0, ge=0)
    """Points of validation accuracy added to the largest gain seen, beside two standard errors of the validation accuracy."""


class SearchConfig(Options):
    """A strategy search: the space of candidates, the objectives, the constraints, the budget."""

    budget: float | None = None
    """Wall-clock budget (seconds, or text such as 60m, 1h30m), final re-measurement included; the CLI's --budget overrides it."""
    sampler: Literal["tpe", "nsga2", "random"] = "tpe"
    """Optuna sampler: tpe (multi-objective TPE), nsga2 (NSGA-II) or random (the baseline to beat)."""
    objectives: list[Literal["accuracy", "latency", "bytes"]] = Field(
        default_factory=lambda: ["accuracy", "latency"], min_length=1)
    """What the front trades off: accuracy (validation, maximised), latency (ratio to the teacher on the target), bytes."""
    constraints: Constraints = Field(default_factory=Constraints)
    """Accuracy floor and latency/size budgets relative to the teacher."""
    target: Target = Field(default_factory=Target)
    """The runtime, batch size and threads latency is measured at."""
    space: dict[str, DimensionSpec] | None = Field(None, validate_default=True)
    """Dimensions: `route`, `recovery`, `quantize`, or `step.field` (e.g. prune.ratio, distill.losses.kd.T, prune.ratios.layer1), each a list of choices or {low, high, log, step}; none: the default space."""
    fixed: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Step parameters every candidate uses (e.g. {distill: {cache: memory}}), over the search's defaults."""
    early_stop: EarlyStop = Field(default_factory=EarlyStop)
    """Low-fidelity stopping of hopeless trials."""
    trials: int | None = Field(None, gt=0)
    """At most this many trials (with the budget); none: as many as the budget allows."""
    compare_with: list[str] = Field(default_factory=list)
    """Strategies of the recipe measured beside the front in the final comparison (e.g. teacher-int8); the baseline always is."""
    front_size: int = Field(6, gt=0, le=20)
    """Front members re-measured on the test set at the end (spread along the front)."""
    seed: int | None = None
    """Sampler seed; none: the recipe's seed."""

    @field_validator("budget", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_budget(value)

    @field_validator("objectives")
    @classmethod
    def _distinct(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError(f"objectives {values} name one twice")
        if "accuracy" not in values:
            raise ValueError(f"objectives {values} must include accuracy (a compressed model is chosen by what it keeps)")
        return values

    @field_validator("space")
    @classmethod
    def _runs_on_target(cls, space: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        """INT8 candidates run on ONNX Runtime only, so a torch target rules out quantize choices."""
        target = info.data.get("target")
        choices = QUANTIZE if space is None else space.get("quantize", ["none"])
        if target is not None and target.runtime == "torch" and isinstance(choices, list | tuple) and \
                any(c != "none" for c in choices):
            which = "the default space" if space is None else "the space"
            raise ValueError(f"target.runtime torch times candidates on torch eager, but {which} quantizes (quantize "
                             f"{list(choices)}; INT8 runs on ONNX Runtime only): set target.runtime: ort, or "
                             "quantize: [none] in the space")
        return space


__all__ = ["OBJECTIVES", "QUANTIZE", "RECOVERIES", "ROUTES", "SPECIAL", "Constraints", "EarlyStop", "Range",
           "SearchConfig", "Target", "human_seconds", "parse_budget"]
